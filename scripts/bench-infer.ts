/**
 * Deploy-time inference report on the Fashion-MNIST test split:
 *   npm run bench:infer -- --checkpoint <model.fmfl> [--peers a.fmfl,b.fmfl,...] [--depths 2,4,1,3] [--limit N]
 *                          [--out out/infer] [--threads N] [--json]
 *
 * - per exit: accuracy of the exit head and of the nearest class prototype, and the calibrated latency of a
 *   progressive pass stopping at that exit (batch 1 and batch 64; median of repeated passes);
 * - exit averaging: accuracy of the mean of the softmax of exits 1..k (free: a pass to exit k computes them);
 * - collaborative prediction with k = 1..4 peers of mixed depths, simulated in-process: peer j runs checkpoint
 *   `--peers[j]` answering from exit `--depths[j]` (head); the requester runs `--checkpoint` at its last exit and
 *   combines its answer with the k peers' (mean and confidence-weighted). The wire protocol is exercised by
 *   test/integration/infer-mesh.test.ts; here only the accuracy of the combination is measured, and the latency
 *   shown is the slowest participant's compute (peers run in parallel; network time excluded).
 * Writes `<out>/bench-infer.json` and `<out>/accuracy-vs-latency.svg`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import { loadDataset, toFloatBatch, balancedIndices } from '../src/data/index.ts';
import { prototypesFromStats } from '../src/model/model-checkpoint.ts';
import { openModel } from '../src/infer/load.ts';
import { combineProbs, meanProbs, softmax, prototypeProbs, argmax, type CombineRule } from '../src/infer/combine.ts';
import { planExit, DEFAULT_SEGMENT_THREADS, type AnytimeModel } from '../src/infer/anytime.ts';
import { buildInferGraph, IMAGES } from '../src/model/graphs.ts';
import { loadBackbone } from '../src/model/backbone.ts';
import { trainableSpecs } from '../src/model/vit.ts';
import { Session, type FeedValue } from '../src/runtime/index.ts';

const o = new Command()
  .requiredOption('--checkpoint <file>', 'model checkpoint of the requester (e.g. from npm run finetune -- --save)')
  .option('--peers <list>', 'comma-separated checkpoints of the simulated peers (default: the requester checkpoint)')
  .option('--depths <list>', 'exit (1-based) each simulated peer answers from', '2,4,1,3')
  .option('--limit <n>', 'evaluate on the first N test images of a seeded shuffle (default all 10,000)')
  .option('--out <dir>', 'output folder', 'out/infer')
  .option('--threads <n>', 'onnxruntime threads per session (default 1, see DEFAULT_SEGMENT_THREADS)')
  .option('--repeats <n>', 'latency repeats per batch size', '50')
  .option('--prototypes-from-train <n>', 'recompute class prototypes from n train images per class (instead of the checkpoint\'s)')
  .option('--json', 'print only the JSON report')
  .parse(process.argv)
  .opts<Record<string, string | boolean | undefined>>();

const log = (s: string): void => {
  if (!o.json) process.stderr.write(s + '\n');
};
const threads = o.threads ? Number(o.threads) : undefined;
const test = await loadDataset('fashion-mnist', 'test');
let idx = Uint32Array.from({ length: test.n }, (_, i) => i);
if (o.limit) {
  const { Rng } = await import('../src/util/rng.ts');
  new Rng(7).shuffle(idx);
  idx = idx.slice(0, Number(o.limit));
}
const N = idx.length;
const C = 10;

/** Per exit: [N * C] head probabilities and prototype probabilities. */
interface Outputs {
  head: Float64Array[];
  proto: Float64Array[] | null;
}

async function runAll(m: AnytimeModel): Promise<Outputs> {
  const E = m.exits;
  const D = m.cfg.dim;
  const head = Array.from({ length: E }, () => new Float64Array(N * C));
  const protos = m.model.prototypes;
  const proto = protos ? Array.from({ length: E }, () => new Float64Array(N * C)) : null;
  const x = new Float32Array(64 * 784);
  for (let s = 0; s < N; s += 64) {
    const n = Math.min(64, N - s);
    const chunk = idx.subarray(s, s + n);
    const xs = toFloatBatch(test, chunk, x.subarray(0, n * 784));
    const r = await m.forward(xs, n);
    for (let e = 0; e < E; e++) {
      for (let b = 0; b < n; b++) {
        head[e].set(softmax(r.logits[e], b * C, C), (s + b) * C);
        if (proto && protos) proto[e].set(prototypeProbs(r.embeddings[e], b * D, D, protos.means, e * C * D, protos.counts, e * C, C), (s + b) * C);
      }
    }
  }
  return { head, proto };
}

/**
 * Reference: one monolithic inference graph per depth k (buildInferGraph with blocks = k), median latency at
 * batch 1 and 64, to show what splitting into segments costs.
 */
async function monolithic(m: AnytimeModel, repeats: number): Promise<{ batch1: number[]; batch64: number[] }> {
  const ck = m.model;
  const bb = await loadBackbone(ck.backbone);
  const trainable = trainableSpecs(ck.cfg, ck.trainableSet, ck.lora);
  const names = new Set(trainable.map((s) => s.name));
  const frozen = new Map([...bb.weights].filter(([k]) => !names.has(k)));
  const feeds: Record<string, FeedValue> = Object.fromEntries(trainable.map((s) => [s.name, { data: ck.weights.get(s.name)!, dims: s.shape }]));
  const res = { batch1: [] as number[], batch64: [] as number[] };
  for (const batch of [1, 64]) {
    for (let k = 1; k <= m.exits; k++) {
      const sess = await Session.create(buildInferGraph({ cfg: ck.cfg, lora: ck.lora, trainable, frozen, batch, blocks: k }).onnx, { threads: threads ?? DEFAULT_SEGMENT_THREADS });
      const f = { ...feeds, [IMAGES]: { data: new Float32Array(batch * 784), dims: [batch, 1, 28, 28] } as FeedValue };
      const t: number[] = [];
      for (let r = 0; r < repeats + 3; r++) {
        const t0 = performance.now();
        await sess.run(f);
        if (r >= 3) t.push(performance.now() - t0);
      }
      await sess.release();
      (batch === 1 ? res.batch1 : res.batch64).push(t.sort((a, b) => a - b)[t.length >> 1]);
    }
  }
  return res;
}

/** Class prototypes of `m` from `perClass` train images per class (seeded), replacing the checkpoint's. */
async function recomputePrototypes(m: AnytimeModel, perClass: number): Promise<void> {
  const train = await loadDataset('fashion-mnist', 'train');
  const ids = balancedIndices(train.labels, perClass, 3);
  const E = m.exits, D = m.cfg.dim;
  const sums = new Float64Array(m.cfg.depth * C * D);
  const counts = new Float64Array(m.cfg.depth * C);
  const x = new Float32Array(64 * 784);
  for (let s = 0; s < ids.length; s += 64) {
    const chunk = ids.subarray(s, s + 64);
    const r = await m.forward(toFloatBatch(train, chunk, x.subarray(0, chunk.length * 784)), chunk.length);
    for (let e = 0; e < E; e++) {
      for (let b = 0; b < chunk.length; b++) {
        const y = train.labels[chunk[b]];
        counts[e * C + y]++;
        for (let k = 0; k < D; k++) sums[(e * C + y) * D + k] += r.embeddings[e][b * D + k];
      }
    }
  }
  m.setPrototypes(prototypesFromStats({ exits: m.cfg.depth, classes: C, dim: D, sums, counts }));
  log(`prototypes recomputed from ${ids.length} train images`);
}

const row = (a: Float64Array, i: number): Float64Array => a.subarray(i * C, (i + 1) * C);
function accuracy(probOf: (i: number) => ArrayLike<number>): number {
  let ok = 0;
  for (let i = 0; i < N; i++) if (argmax(probOf(i)) === test.labels[idx[i]]) ok++;
  return ok / N;
}
const pct = (x: number): number => Math.round(x * 10000) / 100;
const ms = (x: number): number => Math.round(x * 1000) / 1000;

log(`loading ${String(o.checkpoint)}`);
const main = await openModel(String(o.checkpoint), { threads, calibrate: Number(o.repeats) });
if (o.prototypesFromTrain) await recomputePrototypes(main, Number(o.prototypesFromTrain));
const lat = main.latency!;
log(`latency batch 1 (ms, cumulative per exit): ${lat.batch1.map((v) => v.toFixed(3)).join(' / ')}`);
log(`latency batch 64: ${lat.batch64.map((v) => v.toFixed(2)).join(' / ')}`);
const mono = await monolithic(main, Number(o.repeats));
log(`monolithic graph (blocks = k) batch 1: ${mono.batch1.map((v) => v.toFixed(3)).join(' / ')}`);
const mo = await runAll(main);
const E = main.exits;
const perExit = Array.from({ length: E }, (_, e) => ({
  exit: e + 1,
  accuracyHead: pct(accuracy((i) => row(mo.head[e], i))),
  accuracyPrototype: mo.proto ? pct(accuracy((i) => row(mo.proto![e], i))) : null,
  latencyMsBatch1: ms(lat.batch1[e]),
  latencyMsBatch64: ms(lat.batch64[e]),
  latencyMsPerImageBatch64: ms(lat.batch64[e] / 64),
  monolithicMsBatch1: ms(mono.batch1[e]),
  monolithicMsBatch64: ms(mono.batch64[e]),
}));
const exitAveraging = Array.from({ length: E }, (_, e) => ({
  exits: `1..${e + 1}`,
  accuracy: pct(accuracy((i) => meanProbs(mo.head.slice(0, e + 1).map((h) => row(h, i))))),
  latencyMsBatch1: ms(lat.batch1[e]),
}));
// `--exit auto`: the exit planned for a batch-1 budget, and the accuracy it gets.
const budgets = [0.1, 0.25, 0.5, 0.75, 1, 2].map((b) => {
  const e = planExit(lat.batch1, b);
  return { budgetMs: b, exit: e + 1, accuracyHead: perExit[e].accuracyHead, accuracyExitAveraging: exitAveraging[e].accuracy };
});
const bestSingle = Math.max(...perExit.map((p) => Math.max(p.accuracyHead, p.accuracyPrototype ?? 0)));

// Simulated peers.
const peerFiles = o.peers ? String(o.peers).split(',').map((s) => s.trim()).filter(Boolean) : [String(o.checkpoint)];
const depths = String(o.depths).split(',').map(Number);
const peers: { file: string; depth: number; version: string; probs: Float64Array; latencyMs: number }[] = [];
const loaded = new Map<string, { m: AnytimeModel; out: Outputs }>();
for (let j = 0; j < depths.length; j++) {
  const file = peerFiles[j % peerFiles.length];
  let l = loaded.get(file);
  if (!l) {
    log(`peer checkpoint ${file}`);
    const m = file === String(o.checkpoint) ? main : await openModel(file, { threads, calibrate: false });
    l = { m, out: file === String(o.checkpoint) ? mo : await runAll(m) };
    loaded.set(file, l);
  }
  const d = Math.min(depths[j], l.m.exits);
  peers.push({ file, depth: d, version: l.m.version, probs: l.out.head[d - 1], latencyMs: lat.batch1[d - 1] });
}
const collaborative: { k: number; peers: { checkpoint: string; modelVersion: string; exit: number }[]; accuracyMean: number; accuracyConfidence: number; accuracyPeersOnlyMean: number; latencyMsBatch1: number }[] = [];
for (let k = 1; k <= peers.length; k++) {
  const ps = peers.slice(0, k);
  const acc = (rule: CombineRule, withLocal: boolean): number =>
    pct(accuracy((i) => combineProbs([...ps.map((p) => row(p.probs, i)), ...(withLocal ? [row(mo.head[E - 1], i)] : [])], rule)));
  collaborative.push({
    k,
    peers: ps.map((p) => ({ checkpoint: p.file.split('/').pop()!, modelVersion: p.version, exit: p.depth })),
    accuracyMean: acc('mean', true),
    accuracyConfidence: acc('confidence', true),
    accuracyPeersOnlyMean: acc('mean', false),
    latencyMsBatch1: ms(Math.max(lat.batch1[E - 1], ...ps.map((p) => p.latencyMs))),
  });
}
const bestEnsemble = Math.max(...exitAveraging.map((x) => x.accuracy), ...collaborative.flatMap((c) => [c.accuracyMean, c.accuracyConfidence]));
const report = {
  dataset: 'fashion-mnist test',
  n: N,
  prototypes: o.prototypesFromTrain ? `recomputed from ${String(o.prototypesFromTrain)} train images per class` : 'from the checkpoint',
  checkpoint: { file: String(o.checkpoint), modelVersion: main.version, source: main.model.source, backbone: main.backboneName, note: main.model.source === 'centralized' ? 'centralized fine-tune (stand-in until a federated checkpoint exists)' : 'federated' },
  device: `cpu (${(await import('node:os')).cpus().length} cores), onnxruntime threads per session ${threads ?? DEFAULT_SEGMENT_THREADS}`,
  perExit,
  exit1OverExit4LatencyBatch1: ms(lat.batch1[0] / lat.batch1[E - 1]),
  exitAveraging,
  budgetsBatch1: budgets,
  collaborative,
  bestSingleExit: bestSingle,
  bestEnsemble,
  ensembleGainPoints: Math.round((bestEnsemble - bestSingle) * 100) / 100,
  targets: {
    exit1AtMost35PercentOfExit4: lat.batch1[0] / lat.batch1[E - 1] <= 0.35,
    ensembleBeatsBestSingleExit: bestEnsemble > bestSingle,
  },
};

await mkdir(String(o.out), { recursive: true });
await writeFile(join(String(o.out), 'bench-infer.json'), JSON.stringify(report, null, 2) + '\n');
await writeFile(join(String(o.out), 'accuracy-vs-latency.svg'), svg(report));
for (const { m } of loaded.values()) if (m !== main) await m.release();
await main.release();
if (o.json) console.log(JSON.stringify(report));
else console.log(JSON.stringify(report, null, 2));
log(`wrote ${join(String(o.out), 'accuracy-vs-latency.svg')}`);

/** A hand-written SVG line plot: accuracy (%) against batch-1 latency (ms). */
function svg(r: typeof report): string {
  const series: { name: string; color: string; pts: [number, number, string][] }[] = [
    { name: 'exit head', color: '#1f77b4', pts: r.perExit.map((p) => [p.latencyMsBatch1, p.accuracyHead, `e${p.exit}`]) },
    ...(r.perExit[0].accuracyPrototype !== null ? [{ name: 'nearest prototype', color: '#2ca02c', pts: r.perExit.map((p) => [p.latencyMsBatch1, p.accuracyPrototype!, `e${p.exit}`] as [number, number, string]) }] : []),
    { name: 'exit averaging (1..k)', color: '#ff7f0e', pts: r.exitAveraging.map((p, i) => [p.latencyMsBatch1, p.accuracy, `1..${i + 1}`]) },
    { name: 'local + k peers (mean)', color: '#d62728', pts: r.collaborative.map((c) => [c.latencyMsBatch1, c.accuracyMean, `k=${c.k}`]) },
  ];
  const W = 860, H = 480, L = 70, R = 250, T = 40, B = 60;
  const xs = series.flatMap((s) => s.pts.map((p) => p[0]));
  const ys = series.flatMap((s) => s.pts.map((p) => p[1]));
  const x0 = 0, x1 = Math.max(...xs) * 1.35;
  const y0 = Math.floor(Math.min(...ys) - 2), y1 = Math.ceil(Math.max(...ys) + 1);
  const X = (v: number): number => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v: number): number => H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2 - R / 2}" y="22" text-anchor="middle" font-size="14">Fashion-MNIST test accuracy vs latency (batch 1, ${esc(r.checkpoint.modelVersion)})</text>`);
  for (let i = 0; i <= 5; i++) {
    const yv = y0 + ((y1 - y0) * i) / 5;
    const xv = x0 + ((x1 - x0) * i) / 5;
    out.push(`<line x1="${L}" x2="${W - R}" y1="${Y(yv)}" y2="${Y(yv)}" stroke="#eee"/><text x="${L - 8}" y="${Y(yv) + 4}" text-anchor="end">${yv.toFixed(1)}</text>`);
    out.push(`<line x1="${X(xv)}" x2="${X(xv)}" y1="${T}" y2="${H - B}" stroke="#eee"/><text x="${X(xv)}" y="${H - B + 18}" text-anchor="middle">${xv.toFixed(2)}</text>`);
  }
  out.push(`<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="black"/><line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="black"/>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 18}" text-anchor="middle">latency, ms (batch 1; collaborative: slowest participant, network excluded)</text>`);
  out.push(`<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">accuracy, %</text>`);
  series.forEach((s, si) => {
    const collab = s.name.startsWith('local');
    if (!collab) out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.pts.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ')}"/>`);
    // Collaborative points share one latency: their labels go in a column to the right, at least 13 px apart.
    let lastY = -Infinity;
    const sorted = [...s.pts].sort((a, b) => b[1] - a[1]);
    for (const p of collab ? sorted : s.pts) {
      const cx = X(p[0]);
      const cy = Y(p[1]);
      out.push(`<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="4" fill="${s.color}"><title>${esc(s.name)} ${esc(p[2])}: ${p[1]}% at ${p[0]} ms</title></circle>`);
      if (collab) {
        const ly = Math.max(cy, lastY + 13);
        lastY = ly;
        out.push(`<line x1="${cx + 4}" y1="${cy}" x2="${cx + 22}" y2="${ly}" stroke="${s.color}" stroke-width="0.7"/><text x="${cx + 25}" y="${ly + 4}" font-size="10" fill="${s.color}">${esc(p[2])}: ${p[1]}%</text>`);
      } else out.push(`<text x="${(cx + 6).toFixed(1)}" y="${(cy - 6).toFixed(1)}" font-size="10" fill="${s.color}">${esc(p[2])}</text>`);
    }
    const ly = T + 10 + si * 22;
    out.push(`<line x1="${W - R + 15}" x2="${W - R + 40}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="3"/><text x="${W - R + 46}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  const notes = [`n = ${r.n} test images`, r.checkpoint.source === 'centralized' ? 'centralized fine-tune (stand-in' : 'federated checkpoint', ...(r.checkpoint.source === 'centralized' ? ['until a federated one exists)'] : []), ...(r.prototypes.startsWith('recomputed') ? ['prototypes: recomputed from', `train data (${r.prototypes.split(' ')[2]}/class)`] : []), `peers simulated in-process`, `(exits ${r.collaborative.at(-1)?.peers.map((p) => p.exit).join(', ') ?? '-'})`];
  notes.forEach((n, i) => out.push(`<text x="${W - R + 15}" y="${T + 20 + series.length * 22 + i * 14}" font-size="10" fill="#555">${esc(n)}</text>`));
  out.push('</svg>');
  return out.join('\n') + '\n';
}
