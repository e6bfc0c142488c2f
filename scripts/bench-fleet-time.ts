/**
 * Round time of a heterogeneous fleet (issue 16): the same small federation run three ways, in `fmfl-node`
 * processes over TCP loopback (`npm run simulate -- --mode procs`), so every node measures its own training speed at
 * start and the leader's deadlines run on real arrival times:
 *
 *   a. all-full: every node full depth, rank 8 (nodes/fleet-full.json), no throttle;
 *   b. mixed, fixed: half the nodes edge (nodes/fleet-edge-slow.json: depth 2, rank 4, `--emulate-slowdown 3`, i.e.
 *      training at a third of the speed), `--deadline fixed`, fixed `--local-steps` (the baseline);
 *   c. mixed, adaptive: the same fleet with the adaptive deadline (the default) and `--local-steps-auto`.
 *
 * The three runs go back to back, `--repeats` times (a b c a b c ...), so the machine's load hits them alike. Prints
 * one JSON object: per run the mean and median round time (each node's round line: training, exchange, evaluation),
 * the federation's cadence (time between consecutive versions reached by every node), the training / evaluation /
 * waiting split per group, the local steps and advertised throughput of each node, whether every node ended on one
 * identical global state, the ratios c/a and b/a, and the load average during the runs.
 *
 *   npm run bench:fleet-time -- --json
 *   npm run bench:fleet-time -- --json --nodes 4 --rounds 5 --local-steps 30 --repeats 2
 */
import { spawn } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command } from 'commander';

const cli = new Command('bench-fleet-time')
  .option('--nodes <n>', 'nodes per run (even: half edge, half full in the mixed runs)', '4')
  .option('--rounds <n>', 'rounds per run', '5')
  .option('--local-steps <n>', '--local-steps of every node', '30')
  .option('--test-slice <n>', 'test images evaluated each round', '200')
  .option('--repeats <n>', 'times the three runs are repeated, interleaved', '1')
  .option('--out <dir>', 'output folder', 'out/bench-fleet-time')
  .option('--json', 'print only the JSON result')
  .parse();
const opts = cli.opts<{ nodes: string; rounds: string; localSteps: string; testSlice: string; repeats: string; out: string; json?: boolean }>();
const N = Number(opts.nodes);
if (!Number.isInteger(N) || N < 2 || N % 2 !== 0 || N > 16) {
  console.error('bench-fleet-time: --nodes must be an even number in 2..16');
  process.exit(2);
}
const half = N / 2;
const common = [
  '--mode', 'procs', '--rounds', opts.rounds, '--local-steps', opts.localSteps, '--alpha', '0.5', '--test-slice', opts.testSlice,
  '--round-timeout-ms', '60000', '--no-progress', '--out', opts.out,
];
const RUNS = [
  { key: 'a', label: 'all-full, no throttle', args: ['--fleet', `${N}:full`] },
  { key: 'b', label: 'mixed (edge at a third), fixed deadline, fixed local steps', args: ['--fleet', `${half}:edge-slow,${half}:full`, '--deadline', 'fixed'] },
  { key: 'c', label: 'mixed (edge at a third), adaptive deadline, --local-steps-auto', args: ['--fleet', `${half}:edge-slow,${half}:full`, '--local-steps-auto'] },
] as const;

interface Line {
  round: number; version: number; hash: string; time: string; trainMs: number; evalMs?: number; roundMs: number;
  localSteps?: number; trainThroughput?: number; contributors: number; via: string; final?: boolean;
}
interface SimResult { summary: { identicalFinalState: boolean; everyRoundReached: boolean; roundsAppliedExactlyOnce: boolean; finalAccuracyMean: number; finals: { node: number; hash: string }[] }; metrics: Line[][] }

const say = (s: string): void => {
  if (!opts.json) console.log(s);
  else process.stderr.write(`${s}\n`);
};

/** Run the simulator once; resolve with its metrics.json and the load averages sampled while it ran. */
function simulate(name: string, args: readonly string[]): Promise<{ result: SimResult; load: number[]; seconds: number }> {
  const argv = ['--import=tsx', 'scripts/simulate.ts', ...common, ...args, '--name', name];
  say(`[bench] npm run simulate -- ${[...common, ...args, '--name', name].join(' ')}`);
  const t0 = Date.now();
  const load: number[] = [loadavg()[0]];
  const timer = setInterval(() => load.push(loadavg()[0]), 5000);
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stdout.on('data', () => {});
    p.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    p.on('close', async (code) => {
      clearInterval(timer);
      if (code !== 0) return rej(new Error(`simulate ${name} exited with ${code}: ${err.trim().split('\n').slice(-5).join(' | ')}`));
      try {
        const result = JSON.parse(await readFile(join(resolve(opts.out), name, 'metrics.json'), 'utf8')) as SimResult;
        res({ result, load, seconds: Math.round((Date.now() - t0) / 1000) });
      } catch (e) {
        rej(e as Error);
      }
    });
  });
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const r1 = (x: number): number => Math.round(x * 10) / 10;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;

/** What one run measured. Rounds 2.. are "steady" (round 1 includes warm-up and the deadline's cold start). */
function analyse(key: string, res: { result: SimResult; load: number[]; seconds: number }) {
  const { summary, metrics } = res.result;
  const mixed = key !== 'a';
  const groupOf = (i: number): string => (mixed && i < half ? 'edge' : 'full');
  const steady = (m: Line[]): Line[] => m.filter((x) => x.version >= 2);
  const all = metrics.flatMap((m) => steady(m));
  // Cadence: when every node had reached version v, minus when every node had reached v - 1.
  const reached = (v: number): number => Math.max(...metrics.map((m) => Date.parse(m.find((x) => x.version === v)?.time ?? 'x')));
  const versions = [...new Set(metrics.flatMap((m) => m.map((x) => x.version)))].sort((a, b) => a - b).filter((v) => v >= 2);
  const cadence = versions.map((v) => (reached(v) - reached(v - 1)) / 1000).filter(Number.isFinite);
  const groups: Record<string, { nodes: number; trainS: number; evalS: number; waitS: number; roundS: number }> = {};
  for (const g of mixed ? ['edge', 'full'] : ['full']) {
    const xs = metrics.flatMap((m, i) => (groupOf(i) === g ? steady(m) : []));
    const trainS = mean(xs.map((x) => x.trainMs)) / 1000;
    const evalS = mean(xs.map((x) => x.evalMs ?? 0)) / 1000;
    const roundS = mean(xs.map((x) => x.roundMs)) / 1000;
    groups[g] = { nodes: metrics.filter((_, i) => groupOf(i) === g).length, trainS: r3(trainS), evalS: r3(evalS), waitS: r3(roundS - trainS - evalS), roundS: r3(roundS) };
  }
  // The machine's speed at the time: the full nodes' mean training step (the unit of the load-normalised ratios).
  const fullStepMs = mean(metrics.flatMap((m, i) => (groupOf(i) === 'full' ? steady(m).map((x) => x.trainMs / Math.max(1, x.localSteps ?? 1)) : [])));
  return {
    meanRoundS: r3(mean(all.map((x) => x.roundMs)) / 1000),
    fullStepMs: r1(fullStepMs),
    meanRoundInFullSteps: r1(mean(all.map((x) => x.roundMs)) / fullStepMs),
    medianRoundS: r3(median(all.map((x) => x.roundMs)) / 1000),
    meanRoundSAllRounds: r3(mean(metrics.flatMap((m) => m.map((x) => x.roundMs))) / 1000),
    meanCadenceS: r3(mean(cadence)),
    medianCadenceS: r3(median(cadence)),
    groups,
    nodes: metrics.map((m, i) => ({
      node: i, group: groupOf(i), throughput: m[0]?.trainThroughput ?? null,
      localSteps: [...new Set(m.map((x) => x.localSteps))], meanStepMs: r1(mean(steady(m).map((x) => x.trainMs / Math.max(1, x.localSteps ?? 1)))),
    })),
    identicalFinalState: summary.identicalFinalState,
    finalHash: summary.identicalFinalState ? summary.finals[0]?.hash : null,
    everyRoundReached: summary.everyRoundReached,
    roundsAppliedExactlyOnce: summary.roundsAppliedExactlyOnce,
    finalAccuracyMean: r3(summary.finalAccuracyMean),
    loadAverage: { min: r1(Math.min(...res.load)), mean: r1(mean(res.load)), max: r1(Math.max(...res.load)) },
    seconds: res.seconds,
  };
}

type Analysis = ReturnType<typeof analyse>;
const repeats = Math.max(1, Number(opts.repeats));
const perRepeat: Record<string, Analysis>[] = [];
const started = new Date().toISOString();
for (let r = 0; r < repeats; r++) {
  const out: Record<string, Analysis> = {};
  for (const run of RUNS) out[run.key] = analyse(run.key, await simulate(`${run.key}-r${r}`, run.args));
  perRepeat.push(out);
}
const pooled = (k: string, f: (a: Analysis) => number): number => r3(mean(perRepeat.map((x) => f(x[k]))));
const ratio = (k: string, base: string, f: (a: Analysis) => number): number => r3(pooled(k, f) / pooled(base, f));
const result = {
  bench: 'fleet-time',
  started,
  machine: { cpus: cpus().length, model: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30) },
  setup: { nodes: N, edge: half, rounds: Number(opts.rounds), localSteps: Number(opts.localSteps), testSlice: Number(opts.testSlice), edgeSlowdown: 3, repeats, mode: 'procs', order: 'a b c, back to back, per repeat' },
  runs: Object.fromEntries(RUNS.map((run) => [run.key, { label: run.label, command: `npm run simulate -- ${[...common, ...run.args].join(' ')}`, repeats: perRepeat.map((x) => x[run.key]) }])),
  ratios: {
    meanRound: { cOverA: ratio('c', 'a', (x) => x.meanRoundS), bOverA: ratio('b', 'a', (x) => x.meanRoundS) },
    medianRound: { cOverA: ratio('c', 'a', (x) => x.medianRoundS), bOverA: ratio('b', 'a', (x) => x.medianRoundS) },
    meanCadence: { cOverA: ratio('c', 'a', (x) => x.meanCadenceS), bOverA: ratio('b', 'a', (x) => x.meanCadenceS) },
    // Each run's mean round in units of its own full nodes' training step: the shared machine's speed swings
    // several-fold between runs under other work, and this divides it out.
    meanRoundLoadNormalised: { cOverA: ratio('c', 'a', (x) => x.meanRoundInFullSteps), bOverA: ratio('b', 'a', (x) => x.meanRoundInFullSteps) },
  },
  target: 'c/a <= 1.2 (issue 16)',
  targetMet: { raw: ratio('c', 'a', (x) => x.meanRoundS) <= 1.2, loadNormalised: ratio('c', 'a', (x) => x.meanRoundInFullSteps) <= 1.2 },
  everyRunIdenticalFinalState: perRepeat.every((x) => Object.values(x).every((a) => a.identicalFinalState)),
};
console.log(JSON.stringify(result, null, opts.json ? undefined : 2));
