/**
 * Run N `fmfl-node` processes on 127.0.0.1 (one OS process per node, real TCP), wire them by a topology, stream
 * their per-round lines, collect their JSON-lines metrics, and support crash (SIGKILL) / restart faults.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RoundMetrics } from '../../src/round/index.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'src', 'cli', 'fmfl-node.mjs');

export interface ProcNode {
  index: number;
  dir: string;
  proc: ChildProcess | null;
  addr?: string;
  exited: Promise<number | null>;
}

export interface ProcOptions {
  n: number;
  outDir: string;
  /** Extra fmfl-node flags for node i. */
  flags: (i: number) => string[];
  /** Which earlier nodes node i dials (default: node 0). */
  peersOf?: (i: number) => number[];
  /** Print node output lines (round lines always). */
  onLine?: (i: number, line: string) => void;
  /** Every chunk node i writes on stderr (its logs). */
  onStderr?: (i: number, chunk: string) => void;
  /** Command prefix that node i runs under, e.g. `ip netns exec <ns>` (it must exec, keeping the pid). */
  wrap?: (i: number) => string[];
}

/** Start node i and resolve once it printed its listen address. */
export async function startProc(o: ProcOptions, i: number, nodes: ProcNode[]): Promise<ProcNode> {
  const dir = join(o.outDir, `node-${i}`);
  await mkdir(dir, { recursive: true });
  const peers = (o.peersOf?.(i) ?? (i === 0 ? [] : [0])).map((k) => nodes[k]?.addr).filter((a): a is string => !!a);
  const args = [BIN, '--state-dir', dir, '--metrics', join(dir, 'metrics.jsonl'), '--no-progress', '--log-level', 'warn', ...(peers.length ? ['--peers', peers.join(',')] : []), ...o.flags(i)];
  const wrap = o.wrap?.(i) ?? [];
  const proc = spawn(wrap[0] ?? process.execPath, wrap.length ? [...wrap.slice(1), process.execPath, ...args] : args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  let resolveAddr!: (a: string) => void;
  const addrP = new Promise<string>((r) => (resolveAddr = r));
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let k: number;
    while ((k = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, k);
      buf = buf.slice(k + 1);
      const m = /^listening (\S+)/.exec(line);
      if (m) resolveAddr(m[1]);
      o.onLine?.(i, line);
    }
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
    o.onStderr?.(i, d.toString());
  });
  const exited = new Promise<number | null>((r) => proc.on('close', (code) => {
    if (code !== 0 && code !== null) o.onLine?.(i, `exited with code ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`);
    r(code);
  }));
  const node: ProcNode = { index: i, dir, proc, exited };
  node.addr = await Promise.race([addrP, exited.then(() => undefined as unknown as string)]);
  if (!node.addr) throw new Error(`node ${i} failed to start: ${err.trim().split('\n').slice(-5).join('\n')}`);
  nodes[i] = node;
  return node;
}

export async function startAll(o: ProcOptions): Promise<ProcNode[]> {
  const nodes: ProcNode[] = [];
  for (let i = 0; i < o.n; i++) await startProc(o, i, nodes);
  return nodes;
}

/** SIGKILL a node (no goodbye, no flush): a crash. */
export function kill9(node: ProcNode): void {
  node.proc?.kill('SIGKILL');
  node.proc = null;
}

export async function readMetrics(node: ProcNode): Promise<RoundMetrics[]> {
  try {
    const text = await readFile(join(node.dir, 'metrics.jsonl'), 'utf8');
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as RoundMetrics);
  } catch {
    return [];
  }
}

/**
 * Run `script --child <spec as JSON>` in a fresh Node process (its own heap and peak RSS) and resolve with the JSON
 * of the `RESULT {...}` line it prints; `label` names the run in the error when it exits otherwise.
 */
export function runChildScript<T>(script: string, spec: unknown, label: string): Promise<T> {
  const args = ['--import=tsx', script, '--child', JSON.stringify(spec)];
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code === 0 && line) res(JSON.parse(line.slice(7)) as T);
      else rej(new Error(`child ${label} exited with ${code}`));
    });
  });
}
