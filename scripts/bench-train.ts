/**
 * Training-engine benchmark (not part of `npm test`):
 *   npm run bench:train -- [--json] [--steps 40] [--batch 64] [--threads N] [--device cpu|cuda|auto]
 * Measures, at batch 64 on the embedded backbone (or a fresh vit-tiny when none is committed):
 *   (a) forward-only evaluation of all exits, (b) a LoRA r=8 train step including AdamW, (c) a full-parameter
 *   train step including AdamW; ms/step, samples/s, the (b)/(a) ratio, batch-1 forward latency and peak RSS.
 * With --backbone <name> (a backbone in models/, e.g. one made by import-model) it times that backbone instead and,
 * in the same interleaved run, the LoRA step of the natively built vit-tiny (fresh weights, LoRA r=8 on q and v):
 * `nativeLoraStep` and `loraStepOverNative`. That pair is timed on its own after the other cases: `--pairs` (default
 * 2 x steps) pairs of one step of each, the order within a pair alternating, so that both steps of a pair meet the
 * same load; it reports the median step of each, their ratio, and the median and quartiles of the per-pair ratios
 * (`vsNative`). An imported backbone's LoRA sites are the ones chosen at import. Every case is built first and then timed interleaved (ten
 * rounds of a block of steps/10 runs of each, after warm-up, the order reversed every other round; a case's figure is
 * the median of its blocks' means), so that drift in the machine's speed during a run shifts all cases alike and the
 * ratios stay comparable. `spin`: whether onnxruntime's threads spin-wait (FMFL_ORT_SPIN=1; off by default).
 */
import { basename } from 'node:path';
import { Command } from 'commander';
import { cpus, loadavg } from 'node:os';
import { buildInferGraph, IMAGES, type BuiltGraph } from '../src/model/graphs.ts';
import { DEFAULT_LORA, VIT_TINY, backboneSpecs, exitSpecs, initWeights, type Weights } from '../src/model/vit.ts';
import { architectureOf, trainableTensors } from '../src/model/architecture.ts';
import { Session, ortVersion, spinDefault, type ExecutionProvider, type FeedValue } from '../src/runtime/index.ts';
import { Trainer } from '../src/train/trainer.ts';
import { loadDataset } from '../src/data/index.ts';

const program = new Command()
  .option('--json', 'print JSON only')
  .option('--steps <n>', 'timed steps per case', '40')
  .option('--batch <n>', 'batch size', '64')
  .option('--threads <n>', 'onnxruntime intra-op threads (default: cores)')
  .option('--device <d>', 'cpu | cuda | auto', 'cpu')
  .option('--no-fused-gelu', 'use the Erf composition of GELU instead of com.microsoft.Gelu (the default)')
  .option('--backbone <name>', 'time this backbone from models/ (e.g. an imported ONNX model) and, in the same run, the native vit-tiny LoRA step')
  .option('--pairs <n>', 'with --backbone: alternating single-step pairs of the imported and the native LoRA step (default 2 x steps)')
  .option('--reference <onnx>', 'also time this forward graph (e.g. the PyTorch export of scripts/reference/vit_torch.py) with the same session settings')
  .parse(process.argv);
const o = program.opts<{ json?: boolean; steps: string; batch: string; threads?: string; device: ExecutionProvider; fusedGelu?: boolean; reference?: string; backbone?: string; pairs?: string }>();
const steps = Number(o.steps);
const batch = Number(o.batch);
const threads = o.threads ? Number(o.threads) : undefined;
const log = (...a: unknown[]): void => {
  if (!o.json) console.error(...a);
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

type Case = { runs: number; fn: () => Promise<unknown> };

/**
 * Times the cases interleaved: 5 warm-up calls each, then `rounds` rounds in which every case runs a block of
 * runs/rounds calls, the order of the cases reversed every other round (so that no case always follows the same
 * one). A case's figure is the median over rounds of its block's mean ms per call; `perRound` keeps the blocks.
 */
async function timeInterleaved(cases: Record<string, Case>, rounds = 10): Promise<{ ms: Record<string, number>; perRound: Record<string, number[]> }> {
  const perRound: Record<string, number[]> = {};
  for (const [name, c] of Object.entries(cases)) {
    perRound[name] = [];
    for (let i = 0; i < 5; i++) await c.fn(); // warm-up (first runs allocate arenas)
  }
  const order = Object.entries(cases);
  for (let r = 0; r < rounds; r++) {
    for (const [name, c] of r % 2 ? [...order].reverse() : order) {
      const per = Math.max(1, Math.round(c.runs / rounds));
      const t = performance.now();
      for (let i = 0; i < per; i++) await c.fn();
      perRound[name].push((performance.now() - t) / per);
    }
  }
  return { ms: Object.fromEntries(Object.entries(perRound).map(([k, v]) => [k, median(v)])), perRound };
}

/**
 * `pairs` pairs of one call of `a` and one of `b` (after 5 warm-up calls each), the order within a pair alternating.
 * Medians of each side's calls, their ratio a/b, and the median and quartiles of the per-pair ratios.
 */
async function timePairs(a: () => Promise<unknown>, b: () => Promise<unknown>, pairs: number): Promise<{ importedMs: number; nativeMs: number; ratio: number; medianPair: number; quartiles: number[]; pairs: number }> {
  for (let i = 0; i < 5; i++) {
    await a();
    await b();
  }
  const ta: number[] = [];
  const tb: number[] = [];
  const timed = async (f: () => Promise<unknown>, into: number[]): Promise<void> => {
    const t = performance.now();
    await f();
    into.push(performance.now() - t);
  };
  for (let p = 0; p < pairs; p++) {
    if (p % 2) {
      await timed(b, tb);
      await timed(a, ta);
    } else {
      await timed(a, ta);
      await timed(b, tb);
    }
  }
  const r = ta.map((x, i) => x / tb[i]).sort((x, y) => x - y);
  const q = (f: number): number => r[Math.min(r.length - 1, Math.floor(f * r.length))];
  return { importedMs: median(ta), nativeMs: median(tb), ratio: median(ta) / median(tb), medianPair: q(0.5), quartiles: [q(0.25), q(0.75)], pairs };
}

let cfg = VIT_TINY;
let weights: Weights;
let source = 'embedded backbone';
try {
  const { loadBackbone } = await import('../src/model/backbone.ts');
  const bb = await loadBackbone(o.backbone);
  weights = bb.weights;
  cfg = bb.cfg;
  source = `${o.backbone ? 'backbone' : 'embedded backbone'} models/${bb.manifest.name}`;
} catch (err) {
  if (o.backbone) throw err;
  weights = initWeights([...backboneSpecs(cfg), ...exitSpecs(cfg)], 1);
  source = 'fresh vit-tiny (no embedded backbone found)';
}
const pixels = cfg.channels * cfg.image * cfg.image;
const imageDims = [cfg.channels, cfg.image, cfg.image];
const fm = await loadDataset('fashion-mnist', 'train');
// A backbone with another input spec trains on seeded random pixels of its own shape (timing only).
const ds = fm.channels === cfg.channels && fm.height === cfg.image ? fm : { ...fm, channels: cfg.channels, height: cfg.image, width: cfg.image, images: Uint8Array.from({ length: fm.n * pixels }, (_, i) => (i * 2654435761) >>> 24) };
const idx = Uint32Array.from({ length: batch }, (_, i) => (i * 937) % ds.n);

// (a) forward-only, all exits, LoRA tensors as inputs (as the node evaluates).
const specs = trainableTensors(cfg, 'lora+heads', DEFAULT_LORA);
const loraW = initWeights(specs, 3);
const frozen: Weights = new Map([...weights].filter(([k]) => !specs.some((s) => s.name === k)));
async function forwardSession(b: number, blocks?: number): Promise<{ s: Session; feeds: Record<string, FeedValue>; g: BuiltGraph }> {
  const g = buildInferGraph({ cfg, lora: DEFAULT_LORA, trainable: specs, frozen, batch: b, blocks, fusedGelu: o.fusedGelu });
  const s = await Session.create(g.onnx, { provider: o.device, threads });
  const feeds: Record<string, FeedValue> = {};
  for (const sp of specs) feeds[sp.name] = { data: loraW.get(sp.name)!, dims: sp.shape };
  feeds[IMAGES] = { data: new Float32Array(b * pixels).map((_, i) => Math.sin(i)), dims: [b, ...imageDims] };
  return { s, feeds, g };
}
const fwd = await forwardSession(batch);
const fwd1 = await forwardSession(1);
const exit1 = await forwardSession(1, 1);
const cases: Record<string, Case> = {
  forward: { runs: steps, fn: () => fwd.s.run(fwd.feeds) },
  forward1: { runs: steps * 5, fn: () => fwd1.s.run(fwd1.feeds) },
  exit1: { runs: steps * 5, fn: () => exit1.s.run(exit1.feeds) },
};

// Reference forward graph (same session settings), e.g. the PyTorch export of the same model.
if (o.reference) {
  const { readFile } = await import('node:fs/promises');
  const rs = await Session.create(new Uint8Array(await readFile(o.reference)), { provider: o.device, threads });
  const input = rs.inputNames[0];
  const rfeeds: Record<string, FeedValue> = { [input]: { data: new Float32Array(batch * pixels).map((_, i) => Math.sin(i)), dims: [batch, ...imageDims] } };
  cases.reference = { runs: steps, fn: () => rs.run(rfeeds) };
}

// (b) LoRA + heads train step, (c) full train step; both including AdamW.
const trainers: Record<string, Trainer> = {};
for (const set of ['lora+heads', 'all'] as const) {
  const tr = await Trainer.create({ cfg, lora: DEFAULT_LORA, trainableSet: set, weights, batch, threads, provider: o.device, fusedGelu: o.fusedGelu, seed: 1 });
  trainers[set] = tr;
  cases[set] = { runs: steps, fn: () => tr.step(ds, idx) };
}
if (o.backbone) {
  const tr = await Trainer.create({ cfg: VIT_TINY, lora: DEFAULT_LORA, trainableSet: 'lora+heads', weights: initWeights(backboneSpecs(VIT_TINY), 1), batch, threads, provider: o.device, fusedGelu: o.fusedGelu, seed: 1 });
  trainers.native = tr;
}
const loadStart = loadavg().map((x) => round(x));
const { ms } = await timeInterleaved(cases);
const vsNative = o.backbone ? await timePairs(() => trainers['lora+heads'].step(ds, idx), () => trainers.native.step(fm, idx), o.pairs ? Number(o.pairs) : 2 * steps) : null;
const fwdMs = ms.forward;
const fwd1Ms = ms.forward1;
const exit1Ms = ms.exit1;
const referenceMs = o.reference ? ms.reference : null;
const paramCount = (tr: Trainer): number => [...tr.params.values()].reduce((a, p) => a + p.length, 0);
const lora = { ms: ms['lora+heads'], params: paramCount(trainers['lora+heads']) };
const full = { ms: ms.all, params: paramCount(trainers.all) };
const native = vsNative ? { ms: vsNative.nativeMs, params: paramCount(trainers.native) } : null;
for (const tr of Object.values(trainers)) await tr.release();
log(`forward b${batch}: ${fwdMs.toFixed(2)} ms; b1: ${fwd1Ms.toFixed(3)} ms; exit 1 only: ${exit1Ms.toFixed(3)} ms`);
if (referenceMs !== null) log(`reference forward: ${referenceMs.toFixed(2)} ms`);
log(`LoRA step: ${lora.ms.toFixed(2)} ms (${lora.params} trainable); full step: ${full.ms.toFixed(2)} ms (${full.params} trainable)`);

const backboneParams = architectureOf(cfg).backboneTensors(cfg).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
const result = {
  bench: 'train',
  machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, threads: threads ?? 'default', device: o.device, ort: ortVersion(), node: process.versions.node },
  model: { config: o.backbone ? cfg.arch ?? 'vit' : 'vit-tiny', weights: source, backboneParams, loraTrainableParams: lora.params, fullTrainableParams: full.params, fusedGelu: o.fusedGelu !== false },
  batch,
  forward: { msPerBatch: round(fwdMs), samplesPerSec: Math.round((batch * 1000) / fwdMs), batch1Ms: round(fwd1Ms, 3), exit1Batch1Ms: round(exit1Ms, 3) },
  loraStep: { msPerStep: round(lora.ms), samplesPerSec: Math.round((batch * 1000) / lora.ms) },
  fullStep: { msPerStep: round(full.ms), samplesPerSec: Math.round((batch * 1000) / full.ms) },
  ...(native ? { nativeLoraStep: { config: 'vit-tiny', msPerStep: round(native.ms), samplesPerSec: Math.round((batch * 1000) / native.ms), params: native.params }, loraStepOverNative: round(vsNative!.ratio, 3), vsNative: { importedMs: round(vsNative!.importedMs), nativeMs: round(vsNative!.nativeMs), ratio: round(vsNative!.ratio, 3), medianPairRatio: round(vsNative!.medianPair, 3), pairRatioQuartiles: vsNative!.quartiles.map((x) => round(x, 3)), pairs: vsNative!.pairs } } : {}),
  referenceForward: referenceMs === null ? null : { file: basename(o.reference!), msPerBatch: round(referenceMs), fmflOverReference: round(fwdMs / referenceMs) },
  ratioLoraStepToForward: round(lora.ms / fwdMs),
  ratioFullStepToForward: round(full.ms / fwdMs),
  peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
  spin: spinDefault(),
  loadStart,
  load: loadavg().map((x) => round(x)),
};
console.log(JSON.stringify(result, null, o.json ? 0 : 2));

function round(x: number, d = 2): number {
  return Math.round(x * 10 ** d) / 10 ** d;
}
