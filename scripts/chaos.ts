/**
 * Network faults across hosts: N real `fmfl-node` processes, each in its own network namespace on one bridge
 * (198.18.0.0/15 addresses, real TCP between hosts), federating with the leader protocol and a roster of all N,
 * under one fault scenario. Prints one JSON verdict line per scenario (`all`: every scenario, then a table).
 * Root only; not part of `npm test`.
 *
 *   npm run chaos -- baseline
 *   npm run chaos -- partition --nodes 5
 *   npm run chaos -- all
 *
 * Scenarios: baseline; partition (a seeded minority cut off for 3 rounds, then healed); loss10 / loss30 (every
 * host drops that share of inbound packets, iptables statistic); kill-member / kill-leader (SIGKILL a member, or
 * the next round's leader, 1 s into a round, restart it from its checkpoint 5 s later); rate1mbit (tc tbf caps
 * every host's egress at 1 Mbit/s). Namespaces, veths, rules and processes are removed on exit, error or SIGINT.
 */
import { Command } from 'commander';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadData } from '../src/data/index.ts';
import { loadOrCreateIdentity } from '../src/mesh/index.ts';
import { loadBackbone } from '../src/model/backbone.ts';
import { leaderOrder } from '../src/round/index.ts';
import { computeVerdict, verdictTable, type Verdict } from './lib/chaos-verdict.ts';
import { checkPrerequisites, Netns, NetnsError } from './lib/netns.ts';
import { kill9, startProc, type ProcNode, type ProcOptions } from './lib/procs.ts';

const SCENARIOS = ['baseline', 'partition', 'loss10', 'loss30', 'kill-member', 'kill-leader', 'rate1mbit'] as const;
type Scenario = (typeof SCENARIOS)[number];
const FEDERATION = 'chaos';
const PORT = 4001;

const program = new Command()
  .argument('<scenario>', `${SCENARIOS.join(' | ')} | all`)
  .option('--nodes <n>', 'hosts, one fmfl-node each', '5')
  .option('--rounds <n>', 'rounds', '10')
  .option('--local-steps <n>', 'local steps per round', '30')
  .option('--batch <n>', 'batch size', '32')
  .option('--test-slice <n>', 'test images each node evaluates per round', '200')
  .option('--threads <n>', 'onnxruntime threads per node', '1')
  .option('--round-timeout-ms <n>', 'leader: most a round waits for updates', '30000')
  .option('--leader-timeout-ms <n>', 'leader: backup delay per rank', '10000')
  .option('--fault-at <n>', 'version after which the fault starts (partition, kills)', '3')
  .option('--kill-after-ms <n>', 'kill-*: the SIGKILL comes this long after the first node logged version --fault-at (mid local training)', '1000')
  .option('--partition-rounds <n>', 'partition: rounds the majority runs before the heal', '3')
  .option('--down-s <n>', 'kill-*: seconds between the SIGKILL and the restart', '5')
  .option('--seed <n>', 'seed of the partition side and the killed member (also the label split)', '42')
  .option('--timeout-s <n>', 'a scenario is stopped (nodes SIGKILLed, completed=false) after this many seconds', '900')
  .option('--grace-s <n>', 'once one node finished, the others get this long before being SIGKILLed', '120')
  .option('--out <dir>', 'output folder (a subfolder per scenario: node logs, metrics, checkpoints, verdict.json)', 'out/chaos')
  .option('--node-log-level <level>', "nodes' --log-level (their stderr goes to out/chaos/<scenario>/node-<i>/stderr.log)", 'info')
  .option('--verbose', 'print every node line');

// ------------------------------------------------------------------------------------------------------------
// Cleanup: whatever happens, kill our node processes (by pid) and delete our namespaces.

let live: { nets: Netns[]; nodes: ProcNode[] } = { nets: [], nodes: [] };
function cleanup(): void {
  for (const n of live.nodes) if (n?.proc) kill9(n);
  for (const net of live.nets) net.destroy();
  live = { nets: [], nodes: [] };
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    console.error(`chaos: ${sig}: killing the nodes and removing the namespaces`);
    cleanup();
    process.exit(130);
  });
}

/** Seeded uniform [0, 1) (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

type Opts = Record<string, string | boolean | undefined>;

type ChaosVerdict = Verdict & { droppedPackets: { loss: number; partition: number; shaped?: { sent: number; dropped: number; overlimits: number } } };

async function runScenario(scenario: Scenario, o: Opts): Promise<ChaosVerdict> {
  const N = Number(o.nodes);
  const rounds = Number(o.rounds);
  const faultAt = Number(o.faultAt);
  const random = rng(Number(o.seed));
  const outDir = resolve(String(o.out), scenario);
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  const dirs = Array.from({ length: N }, (_, i) => join(outDir, `node-${i}`));
  const ids: string[] = [];
  for (const d of dirs) {
    await mkdir(d, { recursive: true });
    ids.push((await loadOrCreateIdentity(d)).peerId.toString());
  }
  const roster = join(outDir, 'roster.json');
  await writeFile(roster, JSON.stringify(ids, null, 1));

  const t0 = Date.now();
  const events: string[] = [];
  const event = (s: string): void => {
    const line = `t=${((Date.now() - t0) / 1000).toFixed(1)}s ${s}`;
    events.push(line);
    console.log(`[chaos ${scenario}] ${line}`);
  };
  const net = Netns.create(`fmflc${process.pid % 100000}`, N);
  live.nets.push(net);
  const nodes: ProcNode[] = [];
  live.nodes = nodes;
  const logs: { out: WriteStream; err: WriteStream }[] = dirs.map((d) => ({ out: createWriteStream(join(d, 'stdout.log'), { flags: 'a' }), err: createWriteStream(join(d, 'stderr.log'), { flags: 'a' }) }));
  const version = new Array<number>(N).fill(0);
  const finished = new Set<number>();
  let onVersion: (i: number, v: number) => void = () => {};

  const procOpts: ProcOptions = {
    n: N,
    outDir,
    wrap: (i) => net.exec(i),
    peersOf: (i) => Array.from({ length: i }, (_, k) => k),
    flags: (i) => [
      '--listen', `/ip4/${net.hosts[i].ip}/tcp/${PORT}`, '--federation', FEDERATION, '--roster', roster, '--heartbeat-ms', '1000', '--expiry-ms', '6000',
      '--data', 'fashion-mnist', '--shard', `${i}/${N}`, '--partition-seed', String(o.seed), '--protocol', 'leader', '--rounds', String(rounds),
      '--local-steps', String(o.localSteps), '--batch', String(o.batch), '--test-slice', String(o.testSlice), '--threads', String(o.threads),
      '--round-timeout-ms', String(o.roundTimeoutMs), '--leader-timeout-ms', String(o.leaderTimeoutMs), '--log-level', String(o.nodeLogLevel),
      ...(i === 0 ? ['--final-eval'] : []),
    ],
    onLine: (i, line) => {
      logs[i].out.write(`${line}\n`);
      if (o.verbose || line.startsWith('exited')) console.log(`[node ${i}] ${line}`);
      const m = /^round \d+ v(\d+) /.exec(line);
      if (m) {
        version[i] = Number(m[1]);
        if (!o.verbose && i === 0) console.log(`[node ${i}] ${line}`);
        onVersion(i, version[i]);
      }
      if (/^done: /.test(line)) finished.add(i);
    },
    onStderr: (i, chunk) => logs[i].err.write(chunk),
  };
  const alive = (): number[] => nodes.filter((n) => n?.proc).map((n) => n.index);
  const restart = async (i: number): Promise<void> => {
    const others = alive().filter((k) => k !== i);
    event(`restart node ${i} from its checkpoint`);
    await startProc({ ...procOpts, peersOf: () => others }, i, nodes);
  };
  const killAndRestart = (i: number, why: string): void => {
    setTimeout(() => {
      event(`SIGKILL node ${i} (${why}) at version ${version[i]}`);
      kill9(nodes[i]);
      setTimeout(() => void restart(i).catch((err) => event(`restart of node ${i} failed: ${(err as Error).message}`)), 1000 * Number(o.downS));
    }, Number(o.killAfterMs));
  };

  // Faults set up before the nodes start hold for the whole run.
  if (scenario === 'loss10' || scenario === 'loss30') {
    const p = scenario === 'loss10' ? 0.1 : 0.3;
    net.setLoss(p);
    event(`every host drops ${p * 100}% of inbound packets`);
  }
  if (scenario === 'rate1mbit') {
    net.setRate(1);
    event('every host egress capped at 1 Mbit/s (tbf)');
  }
  let fired = false;
  if (scenario === 'partition') {
    const order = Array.from({ length: N }, (_, i) => i).sort(() => random() - 0.5);
    const minority = order.slice(0, Math.floor((N - 1) / 2)).sort((a, b) => a - b);
    const majority = order.slice(minority.length).sort((a, b) => a - b);
    const healAt = faultAt + Number(o.partitionRounds);
    let healed = false;
    onVersion = (_i, v) => {
      if (!fired && v >= faultAt) {
        fired = true;
        net.partition(minority, majority);
        event(`partition: nodes ${minority.join(',')} cut off from ${majority.join(',')} (a node reached v${v})`);
      } else if (fired && !healed && majority.every((k) => version[k] >= healAt)) {
        healed = true;
        net.heal();
        event(`heal: the majority reached v${healAt}; minority at ${minority.map((k) => `v${version[k]}`).join(',')}`);
      }
    };
  } else if (scenario === 'kill-member' || scenario === 'kill-leader') {
    onVersion = (_i, v) => {
      if (fired || v < faultAt) return;
      fired = true;
      const next = v + 1;
      const order = leaderOrder(FEDERATION, next, alive().map((k) => ids[k]));
      const leader = ids.indexOf(order[0]);
      const members = alive().filter((k) => k !== leader);
      const victim = scenario === 'kill-leader' ? leader : members[Math.floor(random() * members.length)];
      killAndRestart(victim, scenario === 'kill-leader' ? `the leader of round ${next}` : `a member of round ${next}, not its leader`);
    };
  }

  for (let i = 0; i < N; i++) await startProc(procOpts, i, nodes);
  event(`${N} nodes listening on ${net.hosts.map((h) => h.ip).join(', ')}`);

  // Wait for every node (restarted ones included) to exit, or the scenario's time to run out.
  const killedAtEnd: number[] = [];
  const deadline = t0 + 1000 * Number(o.timeoutS);
  let firstDone = 0;
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    const running = alive().filter((k) => nodes[k].proc!.exitCode === null && nodes[k].proc!.signalCode === null);
    const pendingRestart = scenario.startsWith('kill') && fired && events.every((e) => !e.includes('restart node'));
    if (running.length === 0 && !pendingRestart) break;
    if (finished.size > 0 && !firstDone) firstDone = Date.now();
    const late = firstDone && Date.now() > firstDone + 1000 * Number(o.graceS);
    if (Date.now() > deadline || late) {
      event(`${late ? `grace of ${o.graceS}s after the first node finished` : `timeout of ${o.timeoutS}s`} ran out: SIGKILL nodes ${running.join(',')} (versions ${running.map((k) => `v${version[k]}`).join(',')})`);
      for (const k of running) {
        killedAtEnd.push(k);
        kill9(nodes[k]);
      }
      break;
    }
  }
  await Promise.all(nodes.map((n) => n.exited));
  await Promise.all(logs.flatMap((l) => [l.out, l.err]).map((s) => new Promise((r) => s.end(r))));
  const wallS = (Date.now() - t0) / 1000;
  const network = { ...net.dropped(), ...(scenario === 'rate1mbit' ? { shaped: net.shaped() } : {}) };
  net.destroy();
  live = { nets: [], nodes: [] };
  const verdict = { ...(await computeVerdict({ scenario, nodes: N, rounds, dirs, wallS, events, killedAtEnd })), droppedPackets: network };
  await writeFile(join(outDir, 'verdict.json'), JSON.stringify(verdict, null, 2));
  return verdict;
}

async function main(): Promise<number> {
  program.parse(process.argv);
  const which = program.args[0];
  const o = program.opts<Opts>();
  if (which !== 'all' && !SCENARIOS.includes(which as Scenario)) {
    console.error(`chaos: unknown scenario "${which}"; one of ${SCENARIOS.join(', ')}, all`);
    return 2;
  }
  const N = Number(o.nodes);
  if (!Number.isInteger(N) || N < 3 || N > 16) {
    console.error('chaos: --nodes must be an integer in 3..16');
    return 2;
  }
  try {
    checkPrerequisites();
  } catch (err) {
    console.error(`chaos: ${(err as Error).message}`);
    return 2;
  }
  // Build the dataset cache once here rather than in N node processes at the same time.
  await loadData({ ref: 'fashion-mnist', input: (await loadBackbone(undefined)).input, seed: Number(o.seed) });
  const list = which === 'all' ? [...SCENARIOS] : [which as Scenario];
  const verdicts: ChaosVerdict[] = [];
  for (const s of list) {
    const v = await runScenario(s, o);
    verdicts.push(v);
    console.log(JSON.stringify(v));
  }
  if (list.length > 1) {
    const table = verdictTable(verdicts);
    await writeFile(join(resolve(String(o.out)), 'table.md'), `${table}\n`);
    console.log(`\n${table}`);
  }
  return 0;
}

main().then(
  (code) => {
    cleanup();
    process.exit(code);
  },
  (err) => {
    cleanup();
    console.error(`chaos: ${err instanceof NetnsError ? err.message : (err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
