/**
 * Hosts in Linux network namespaces for `npm run chaos`: one namespace per host, each with a veth `eth0` whose peer
 * sits on a bridge in a dedicated bridge namespace, so the root namespace is never touched. Addresses come from
 * 198.18.0.0/15 (RFC 2544 benchmarking range). Faults: random inbound loss (iptables statistic), partitions
 * (iptables DROP between address sets), egress rate caps (tc tbf). Deleting a namespace removes its veth, its
 * iptables rules and its qdiscs, so `destroy()` is the whole cleanup. Needs root, `ip`, `iptables`, `tc`.
 */
import { execFileSync } from 'node:child_process';

/** A namespace, veth, iptables or tc command failed, or the machine lacks what the script needs. */
export class NetnsError extends Error {
  override name = 'NetnsError';
}

export interface Host {
  index: number;
  /** Namespace name. */
  ns: string;
  /** IPv4 address of the host's eth0 (prefix /24). */
  ip: string;
}

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; code?: string };
    if (e.code === 'ENOENT') throw new NetnsError(`${cmd} not found: install it (apt-get install -y iproute2 iptables)`);
    throw new NetnsError(`${cmd} ${args.join(' ')} failed: ${(e.stderr ?? String(err)).trim()}`);
  }
}

/** Throws a NetnsError telling the user what to do when not root or a tool is missing. */
export function checkPrerequisites(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new NetnsError('npm run chaos needs root (it creates network namespaces, veth pairs, iptables rules and tc qdiscs): run it as root, e.g. sudo npm run chaos -- baseline');
  }
  for (const [cmd, args, pkg] of [['ip', ['-V'], 'iproute2'], ['tc', ['-V'], 'iproute2'], ['iptables', ['--version'], 'iptables']] as const) {
    try {
      execFileSync(cmd, [...args], { stdio: 'ignore' });
    } catch {
      throw new NetnsError(`${cmd} is missing: apt-get install -y ${pkg}`);
    }
  }
}

/** N hosts on one bridge. Create with `Netns.create`, always `destroy()` (idempotent, synchronous). */
export class Netns {
  readonly hosts: Host[];
  private readonly bridgeNs: string;
  private readonly created: string[] = [];
  private partitioned = false;
  /** Packets dropped by partition rules already flushed by heal(). */
  private healedDrops = 0;
  private destroyed = false;

  private constructor(readonly prefix: string, n: number) {
    if (n < 1 || n > 250) throw new NetnsError(`hosts must be 1..250, got ${n}`);
    this.bridgeNs = `${prefix}-br`;
    this.hosts = Array.from({ length: n }, (_, i) => ({ index: i, ns: `${prefix}-h${i}`, ip: `198.18.0.${i + 1}` }));
  }

  /** Namespaces `<prefix>-br` and `<prefix>-h<i>`; the prefix should be unique on the machine (e.g. with the pid). */
  static create(prefix: string, n: number): Netns {
    const net = new Netns(prefix, n);
    try {
      net.build();
    } catch (err) {
      net.destroy();
      throw err;
    }
    return net;
  }

  private build(): void {
    const existing = run('ip', ['netns', 'list']);
    for (const ns of [this.bridgeNs, ...this.hosts.map((h) => h.ns)]) {
      if (existing.split('\n').some((l) => l.split(' ')[0] === ns)) throw new NetnsError(`namespace ${ns} already exists: remove it (ip netns del ${ns}) or use another prefix`);
    }
    this.addNs(this.bridgeNs);
    run('ip', ['-n', this.bridgeNs, 'link', 'add', 'br0', 'type', 'bridge']);
    run('ip', ['-n', this.bridgeNs, 'link', 'set', 'br0', 'up']);
    for (const h of this.hosts) {
      this.addNs(h.ns);
      run('ip', ['link', 'add', 'name', 'eth0', 'netns', h.ns, 'type', 'veth', 'peer', 'name', `h${h.index}`, 'netns', this.bridgeNs]);
      run('ip', ['-n', this.bridgeNs, 'link', 'set', `h${h.index}`, 'master', 'br0']);
      run('ip', ['-n', this.bridgeNs, 'link', 'set', `h${h.index}`, 'up']);
      run('ip', ['-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0']);
      run('ip', ['-n', h.ns, 'link', 'set', 'eth0', 'up']);
      run('ip', ['-n', h.ns, 'link', 'set', 'lo', 'up']);
    }
    this.installChains();
  }

  private addNs(ns: string): void {
    run('ip', ['netns', 'add', ns]);
    this.created.push(ns);
  }

  /** Command prefix that runs a program inside host i (`ip netns exec` execs, so the pid is the program's). */
  exec(i: number): string[] {
    return ['ip', 'netns', 'exec', this.hosts[i].ns];
  }

  private ipt(i: number, args: string[]): void {
    run('ip', ['netns', 'exec', this.hosts[i].ns, 'iptables', '-w', ...args]);
  }

  /**
   * Every host drops each inbound packet with probability p (iptables statistic, kernel randomness: not seedable),
   * so every packet between two hosts is lost with probability p. p = 0 removes the rule.
   */
  setLoss(p: number): void {
    if (!(p >= 0 && p < 1)) throw new NetnsError(`loss must be in [0, 1), got ${p}`);
    for (const h of this.hosts) {
      this.ipt(h.index, ['-F', 'FMFL-LOSS']);
    }
    if (p === 0) return;
    for (const h of this.hosts) this.ipt(h.index, ['-A', 'FMFL-LOSS', '-m', 'statistic', '--mode', 'random', '--probability', String(p), '-j', 'DROP']);
  }

  /** Cut every packet between the hosts in `a` and those in `b` (both directions, on both sides). */
  partition(a: number[], b: number[]): void {
    const cut = (from: number[], to: number[]): void => {
      for (const i of from) {
        for (const j of to) {
          this.ipt(i, ['-A', 'FMFL-PART', '-s', this.hosts[j].ip, '-j', 'DROP']);
          this.ipt(i, ['-A', 'FMFL-PART-OUT', '-d', this.hosts[j].ip, '-j', 'DROP']);
        }
      }
    };
    cut(a, b);
    cut(b, a);
    this.partitioned = true;
  }

  /** Remove every partition rule. */
  heal(): void {
    if (!this.partitioned) return;
    this.healedDrops = this.dropped().partition;
    for (const h of this.hosts) {
      this.ipt(h.index, ['-F', 'FMFL-PART']);
      this.ipt(h.index, ['-F', 'FMFL-PART-OUT']);
    }
    this.partitioned = false;
  }

  /** Cap every host's egress at `mbit` Mbit/s (tc tbf on eth0: 32 KiB burst, 400 ms queue). */
  setRate(mbit: number): void {
    if (!(mbit > 0)) throw new NetnsError(`rate must be > 0 Mbit/s, got ${mbit}`);
    for (const h of this.hosts) run('ip', ['netns', 'exec', h.ns, 'tc', 'qdisc', 'replace', 'dev', 'eth0', 'root', 'tbf', 'rate', `${mbit}mbit`, 'burst', '32kb', 'latency', '400ms']);
  }

  /** The (empty) chains the faults fill, hooked into INPUT / OUTPUT of every host. */
  private installChains(): void {
    for (const h of this.hosts) {
      for (const [chain, hook] of [['FMFL-LOSS', 'INPUT'], ['FMFL-PART', 'INPUT'], ['FMFL-PART-OUT', 'OUTPUT']] as const) {
        this.ipt(h.index, ['-N', chain]);
        this.ipt(h.index, ['-A', hook, '-j', chain]);
      }
    }
  }

  /** Packets the loss and partition rules dropped so far, over all hosts (from the iptables counters). */
  dropped(): { loss: number; partition: number } {
    const count = (i: number, chain: string): number => run('ip', ['netns', 'exec', this.hosts[i].ns, 'iptables', '-w', '-L', chain, '-v', '-x', '-n'])
      .split('\n').slice(2).reduce((a, l) => a + (Number(l.trim().split(/\s+/)[0]) || 0), 0);
    let loss = 0;
    let partition = this.healedDrops;
    for (const h of this.hosts) {
      loss += count(h.index, 'FMFL-LOSS');
      partition += count(h.index, 'FMFL-PART') + count(h.index, 'FMFL-PART-OUT');
    }
    return { loss, partition };
  }

  /** Packets sent and packets the rate cap dropped or delayed (tbf overlimits), over all hosts (tc -s). */
  shaped(): { sent: number; dropped: number; overlimits: number } {
    const out = { sent: 0, dropped: 0, overlimits: 0 };
    for (const h of this.hosts) {
      const t = run('ip', ['netns', 'exec', h.ns, 'tc', '-s', 'qdisc', 'show', 'dev', 'eth0']);
      const m = /Sent \d+ bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)/.exec(t);
      if (m) {
        out.sent += Number(m[1]);
        out.dropped += Number(m[2]);
        out.overlimits += Number(m[3]);
      }
    }
    return out;
  }

  /** Delete every namespace this object created (with its veths, rules and qdiscs). Kill the processes first. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const ns of this.created.reverse()) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  }
}
