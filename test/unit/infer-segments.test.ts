import test from 'ava';
import { buildInferGraph, embeddingName, logitsName, IMAGES } from '../../src/model/graphs.ts';
import { buildSegmentGraphs, hiddenShape, HIDDEN, HIDDEN_NEXT } from '../../src/model/segments.ts';
import { VitConfigSchema, backboneSpecs, exitSpecs, initWeights, loraSpecs, trainableSpecs, type LoraConfig, type Weights } from '../../src/model/vit.ts';
import { loadBackbone, type Backbone } from '../../src/model/backbone.ts';
import type { ModelCheckpoint } from '../../src/model/model-checkpoint.ts';
import { Session, type FeedValue } from '../../src/runtime/index.ts';
import { AnytimeModel, planExit } from '../../src/infer/anytime.ts';
import { meanProbs, softmax } from '../../src/infer/combine.ts';
import { InferError } from '../../src/infer/errors.ts';
import { Rng } from '../../src/util/rng.ts';

const TINY = VitConfigSchema.parse({ image: 8, patch: 4, dim: 8, depth: 3, heads: 2, mlp: 16, classes: 3 });
const LORA: LoraConfig = { rank: 2, alpha: 4, targets: ['q', 'v', 'fc2'] };

function images(seed: number, n: number, px: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n * px }, () => r.uniform(-1, 1));
}

/** Backbone + LoRA (non-zero B) + heads, split into frozen and trainable like a deployed model. */
function tinyModel(seed = 3): { all: Weights; frozen: Weights; trainable: ReturnType<typeof trainableSpecs> } {
  const all = initWeights([...backboneSpecs(TINY), ...exitSpecs(TINY), ...loraSpecs(TINY, LORA)], seed);
  for (const s of loraSpecs(TINY, LORA)) if (s.name.endsWith('lora_b')) all.get(s.name)!.forEach((_, i, a) => (a[i] = Math.cos(i + seed) * 0.4));
  const trainable = trainableSpecs(TINY, 'lora+heads', LORA);
  const names = new Set(trainable.map((s) => s.name));
  return { all, trainable, frozen: new Map([...all].filter(([k]) => !names.has(k))) };
}

function close(t: import('ava').ExecutionContext, a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  t.is(a.length, b.length, what);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
  t.true(worst <= 1e-5, `${what}: max relative difference ${worst}`);
}

async function chainSegments(spec: Parameters<typeof buildSegmentGraphs>[0], all: Weights, x: Float32Array): Promise<Record<string, Float32Array>> {
  const segs = buildSegmentGraphs(spec);
  const out: Record<string, Float32Array> = {};
  let hidden: Float32Array | null = null;
  const specs = new Map(spec.trainable.map((s) => [s.name, s]));
  for (const g of segs) {
    const s = await Session.create(g.onnx, { threads: 1 });
    const feeds: Record<string, FeedValue> = {};
    for (const p of g.params) feeds[p] = { data: all.get(p)!, dims: specs.get(p)!.shape };
    feeds[g.input] = g.input === IMAGES ? { data: x, dims: [spec.batch, spec.cfg.channels, spec.cfg.image, spec.cfg.image] } : { data: hidden!, dims: hiddenShape(spec) };
    const r = await s.run(feeds);
    out[g.logits] = r[g.logits] as Float32Array;
    out[g.embedding] = r[g.embedding] as Float32Array;
    hidden = (r[HIDDEN_NEXT] as Float32Array | undefined) ?? null;
    await s.release();
  }
  return out;
}

test('chained segment graphs reproduce the full inference graph at every exit (tiny ViT, LoRA inputs)', async (t) => {
  const { all, frozen, trainable } = tinyModel();
  const B = 5;
  const x = images(7, B, 64);
  const spec = { cfg: TINY, lora: LORA, trainable, frozen, batch: B };
  const full = await Session.create(buildInferGraph(spec).onnx, { threads: 1 });
  const feeds: Record<string, FeedValue> = Object.fromEntries(trainable.map((s) => [s.name, { data: all.get(s.name)!, dims: s.shape }]));
  feeds[IMAGES] = { data: x, dims: [B, 1, 8, 8] };
  const want = await full.run(feeds);
  const got = await chainSegments(spec, all, x);
  for (let e = 0; e < TINY.depth; e++) {
    close(t, got[logitsName(e)], want[logitsName(e)] as Float32Array, `logits:${e}`);
    close(t, got[embeddingName(e)], want[embeddingName(e)] as Float32Array, `embedding:${e}`);
  }
  const segs = buildSegmentGraphs(spec);
  t.deepEqual(segs.map((s) => s.input), [IMAGES, HIDDEN, HIDDEN]);
  t.deepEqual(segs.map((s) => s.hasHidden), [true, true, false]);
  // Segment i takes exactly block i's LoRA tensors and exit i's head as inputs.
  t.true(segs[1].params.every((p) => p.startsWith('blocks.1.') || p.startsWith('exits.1.')));
  t.is(segs[1].params.length, 3 * 2 + 4);
  await full.release();
});

test('the embedded vit-tiny backbone: segments equal buildInferGraph outputs at batch 1', async (t) => {
  const bb = await loadBackbone();
  const lora: LoraConfig = { rank: 4, alpha: 8, targets: ['q', 'v'] };
  const trainable = trainableSpecs(bb.cfg, 'lora+heads', lora);
  const w = initWeights(loraSpecs(bb.cfg, lora), 1);
  for (const s of loraSpecs(bb.cfg, lora)) if (s.name.endsWith('lora_b')) w.get(s.name)!.forEach((_, i, a) => (a[i] = Math.sin(i) * 0.05));
  const all: Weights = new Map([...bb.weights, ...w]);
  const names = new Set(trainable.map((s) => s.name));
  const frozen = new Map([...bb.weights].filter(([k]) => !names.has(k)));
  const spec = { cfg: bb.cfg, lora, trainable, frozen, batch: 1 };
  const x = images(3, 1, 784);
  const full = await Session.create(buildInferGraph(spec).onnx, { threads: 1 });
  const feeds: Record<string, FeedValue> = Object.fromEntries(trainable.map((s) => [s.name, { data: all.get(s.name)!, dims: s.shape }]));
  feeds[IMAGES] = { data: x, dims: [1, 1, 28, 28] };
  const want = await full.run(feeds);
  const got = await chainSegments(spec, all, x);
  for (let e = 0; e < bb.cfg.depth; e++) close(t, got[logitsName(e)], want[logitsName(e)] as Float32Array, `logits:${e}`);
  await full.release();
});

function tinyCheckpoint(): { ck: ModelCheckpoint; bb: Backbone } {
  const { all, frozen, trainable } = tinyModel(5);
  const weights: Weights = new Map(trainable.map((s) => [s.name, all.get(s.name)!]));
  const ck: ModelCheckpoint = { backbone: 'tiny', cfg: TINY, lora: LORA, trainableSet: 'lora+heads', version: 'v-test', round: 3, source: 'centralized', weights, prototypes: null };
  const bb = { manifest: { name: 'tiny' }, cfg: TINY, weights: frozen } as unknown as Backbone;
  return { ck, bb };
}

test('AnytimeModel: a pass stopped at exit k returns the same exits as the full pass; padding does not leak', async (t) => {
  const { ck, bb } = tinyCheckpoint();
  const m = await AnytimeModel.create({ checkpoint: ck, backbone: bb, threads: 1 });
  const x = images(11, 3, 64);
  const full = await m.forward(x, 3);
  t.is(full.exit, 2);
  t.is(full.stoppedBy, 'exit');
  const early = await m.forward(x, 3, { exit: 1 });
  t.is(early.exit, 1);
  t.is(early.logits.length, 2);
  for (let e = 0; e <= 1; e++) t.deepEqual(Array.from(early.logits[e]), Array.from(full.logits[e]));
  // Batch 1 session on image 2 alone gives image 2's row of the padded batch-64 pass.
  const one = await m.forward(x.slice(2 * 64), 1);
  close(t, one.logits[2], full.logits[2].slice(2 * 3), 'batch 1 vs batch 64 row');
  await t.throwsAsync(m.forward(x, 3, { exit: 3 }), { instanceOf: InferError, message: /exit must be in 0\.\.2/ });
  await t.throwsAsync(m.forward(x.slice(1), 3), { instanceOf: InferError, message: /pixel values/ });
  await t.throwsAsync(m.forward(x, 3, { budgetMs: -1 }), { instanceOf: InferError });
  // Ensemble = mean of the finished exits' softmax; head = softmax of the deepest.
  const ens = m.predictions(full, 'ensemble');
  const head = m.predictions(full, 'head');
  for (let b = 0; b < 3; b++) {
    t.deepEqual(Array.from(ens[b].probs), Array.from(meanProbs([0, 1, 2].map((e) => softmax(full.logits[e], b * 3, 3)))));
    t.deepEqual(Array.from(head[b].probs), Array.from(softmax(full.logits[2], b * 3, 3)));
  }
  t.throws(() => m.predictions(full, 'prototype'), { instanceOf: InferError, message: /no prototypes/ });
  // Prototypes = the embeddings of images 0 and 1 at every exit (classes 0 and 1; class 2 has none):
  // each image is nearest to its own prototype.
  const means = new Float32Array(3 * 3 * 8);
  const counts = new Float32Array(3 * 3);
  for (let e = 0; e < 3; e++) for (let c = 0; c < 2; c++) {
    means.set(full.embeddings[e].subarray(c * 8, (c + 1) * 8), (e * 3 + c) * 8);
    counts[e * 3 + c] = 1;
  }
  t.throws(() => m.setPrototypes({ means: means.subarray(1), counts }), { instanceOf: InferError });
  m.setPrototypes({ means, counts });
  const pr = m.predictions(full, 'prototype');
  t.deepEqual(pr.slice(0, 2).map((p) => p.label), [0, 1]);
  t.is(pr[0].probs[2], 0);
  await m.release();
});

test('budgets: the pass stops before a segment that would overrun; exit auto plans from the calibration', async (t) => {
  const { ck, bb } = tinyCheckpoint();
  let clock = 0;
  // Every clock read advances 10 ms: the pass "costs" 10 ms per segment boundary, deterministically.
  const m = await AnytimeModel.create({ checkpoint: ck, backbone: bb, threads: 1, now: () => (clock += 10) });
  m.latency = { batch1: [10, 20, 30], batch64: [40, 80, 120] };
  const x = images(2, 1, 64);
  // t0 = 10; before exit 1: elapsed 10 + next 10 = 20 <= 25 -> run; before exit 2: elapsed 20 + 10 = 30 > 25 -> stop.
  const r = await m.forward(x, 1, { budgetMs: 25 });
  t.is(r.exit, 1);
  t.is(r.stoppedBy, 'budget');
  const r2 = await m.forward(x, 1, { budgetMs: 1000 });
  t.is(r2.exit, 2);
  t.is(r2.stoppedBy, 'exit');
  // Exit 0 always runs, even with a budget smaller than it.
  t.is((await m.forward(x, 1, { budgetMs: 1 })).exit, 0);
  t.is(m.planExit(25, 1), 1);
  t.is(m.planExit(25, 64), 0);
  t.is(m.planExit(100, 64), 1);
  const p = await m.predict(x, 1, { exit: 'auto', budgetMs: 1000 });
  t.is(p.predictions[0].exit, 2);
  await t.throwsAsync(m.predict(x, 1, { exit: 'auto' }), { instanceOf: InferError, message: /needs a budget/ });
  // Real calibration yields increasing cumulative latencies.
  const lat = await m.calibrate({ repeats: 3, warmup: 1 });
  t.is(lat.batch1.length, 3);
  t.true(lat.batch64.every((v, i) => i === 0 || v >= lat.batch64[i - 1]));
  await m.release();
});

test('planExit picks the deepest exit within the budget and caps at maxExit', (t) => {
  const lat = [0.2, 0.4, 0.6, 0.8];
  t.is(planExit(lat, 0.5), 1);
  t.is(planExit(lat, 0.1), 0);
  t.is(planExit(lat, 10), 3);
  t.is(planExit(lat, 10, 2), 2);
  t.is(planExit(lat, 0.6), 2);
});
