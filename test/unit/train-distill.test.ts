import test from 'ava';
import { Graph, exportOnnx, grad } from '../../src/graph/index.ts';
import { Session } from '../../src/runtime/index.ts';
import { buildInferGraph, logitsName, mutualDistillation } from '../../src/model/graphs.ts';
import { VitConfigSchema, backboneSpecs, exitSpecs, initWeights } from '../../src/model/vit.ts';
import { loadDataset, toFloatBatch } from '../../src/data/index.ts';
import { Trainer } from '../../src/train/trainer.ts';
import { Rng } from '../../src/util/rng.ts';

/** Softmax of row b of z [B, C] at temperature T. */
function softmaxRow(z: ArrayLike<number>, b: number, C: number, T: number): number[] {
  const row = Array.from({ length: C }, (_, c) => z[b * C + c] / T);
  const m = Math.max(...row);
  const e = row.map((v) => Math.exp(v - m));
  const s = e.reduce((a, v) => a + v, 0);
  return e.map((v) => v / s);
}

/** The term by hand: (T^2 / (E (E-1))) sum_k sum_{j != k} mean_b KL(q_j || q_k). */
function handDistill(logits: ArrayLike<number>[], B: number, C: number, T: number): number {
  const E = logits.length;
  let sum = 0;
  for (let k = 0; k < E; k++) {
    for (let j = 0; j < E; j++) {
      if (j === k) continue;
      for (let b = 0; b < B; b++) {
        const qj = softmaxRow(logits[j], b, C, T);
        const qk = softmaxRow(logits[k], b, C, T);
        for (let c = 0; c < C; c++) sum += (qj[c] * (Math.log(qj[c]) - Math.log(qk[c]))) / B;
      }
    }
  }
  return (sum * T * T) / (E * (E - 1));
}

async function runTerm(values: Float64Array[], B: number, C: number, T: number): Promise<{ value: number; grads: Float64Array[] }> {
  const g = new Graph();
  const xs = values.map((_, e) => g.input(`z${e}`, [B, C], 'float64'));
  const d = mutualDistillation(xs, T);
  const gs = grad(d, xs);
  g.output(d, 'd');
  gs.forEach((t, e) => g.output(t, `g${e}`));
  const s = await Session.create(exportOnnx(g), { threads: 1 });
  try {
    const out = await s.run(Object.fromEntries(values.map((v, e) => [`z${e}`, { data: v, dims: [B, C] }])));
    return { value: Number(out.d[0]), grads: values.map((_, e) => out[`g${e}`] as Float64Array) };
  } finally {
    await s.release();
  }
}

test('mutual distillation: the graph value is the hand-computed KL sum; its gradient is the detached-target one', async (t) => {
  const B = 4, C = 5, E = 3, T = 2;
  const rng = new Rng(11);
  const values = Array.from({ length: E }, () => Float64Array.from({ length: B * C }, () => rng.uniform(-3, 3)));
  const { value, grads } = await runTerm(values, B, C, T);
  const want = handDistill(values, B, C, T);
  t.true(want > 0.01, `random exits disagree: ${want}`);
  t.true(Math.abs(value - want) < 1e-12, `graph ${value} vs hand ${want}`);
  // Targets detached: d/dz_k = T / (E (E-1) B) * ((E-1) q_k - sum_{j != k} q_j) (no gradient through the targets).
  for (let k = 0; k < E; k++) {
    for (let b = 0; b < B; b++) {
      const q = values.map((v) => softmaxRow(v, b, C, T));
      for (let c = 0; c < C; c++) {
        let others = 0;
        for (let j = 0; j < E; j++) if (j !== k) others += q[j][c];
        const g = (T / (E * (E - 1) * B)) * ((E - 1) * q[k][c] - others);
        t.true(Math.abs(grads[k][b * C + c] - g) < 1e-12, `exit ${k} sample ${b} class ${c}: ${grads[k][b * C + c]} vs ${g}`);
      }
    }
  }
});

test('mutual distillation is zero, with zero gradient, when every exit predicts the same distribution', async (t) => {
  const B = 3, C = 4;
  const rng = new Rng(5);
  const z = Float64Array.from({ length: B * C }, () => rng.uniform(-2, 2));
  // A per-row shift changes the logits but not the softmax.
  const shifted = z.map((v, i) => v + Math.floor(i / C) * 3 - 1);
  const { value, grads } = await runTerm([z, shifted, Float64Array.from(z)], B, C, 1.5);
  t.true(Math.abs(value) < 1e-12, `agreeing exits: ${value}`);
  t.true(grads.every((g) => g.every((x) => Math.abs(x) < 1e-12)));
});

test('the training graph adds distill * the term over the trained exits: loss - loss_ce matches a hand computation on a tiny ViT batch', async (t) => {
  const cfg = VitConfigSchema.parse({ patch: 7, dim: 16, depth: 3, heads: 2, mlp: 32 });
  const weights = initWeights([...backboneSpecs(cfg), ...exitSpecs(cfg)], 3);
  const ds = await loadDataset('fashion-mnist', 'test');
  const B = 8;
  const idx = Uint32Array.from({ length: B }, (_, i) => i * 97);
  const lora = { rank: 2, alpha: 4, targets: ['q', 'v'] as ('q' | 'v')[] };
  const mk = (distillWeight: number, maxDepth?: number): Promise<Trainer> =>
    Trainer.create({ cfg, lora, trainableSet: 'lora+heads', weights, batch: B, seed: 1, distillWeight, distillTemperature: 3, maxDepth, threads: 1, optimizer: { kind: 'sgd', lr: 0 } });
  const plain = await mk(0);
  const w = 0.7;
  const distilled = await mk(w);
  const shallow = await mk(w, 1);
  t.teardown(() => Promise.all([plain.release(), distilled.release(), shallow.release()]));
  const p = await plain.step(ds, idx);
  const d = await distilled.step(ds, idx);
  t.true(Math.abs(d.lossCe - p.lossCe) < 1e-5, 'the cross-entropy part is unchanged');
  t.true(Math.abs(p.loss - p.lossCe) < 1e-7, 'no term without --distill');
  // The exits' logits from the inference graph at the same weights.
  const ig = buildInferGraph({ cfg, lora, trainable: distilled.trainedSpecs, frozen: distilled.frozen, batch: B });
  const s = await Session.create(ig.onnx, { threads: 1 });
  const feeds: Record<string, { data: Float32Array; dims: number[] }> = { images: { data: toFloatBatch(ds, idx), dims: [B, cfg.channels, cfg.image, cfg.image] } };
  for (const sp of distilled.trainedSpecs) feeds[sp.name] = { data: distilled.params.get(sp.name)!, dims: sp.shape };
  const out = await s.run(feeds);
  await s.release();
  const logits = Array.from({ length: cfg.depth }, (_, e) => out[logitsName(e)] as Float32Array);
  const want = w * handDistill(logits, B, cfg.classes, 3);
  t.true(want > 1e-4, `the fresh heads disagree: ${want}`);
  t.true(Math.abs(d.loss - d.lossCe - want) < 1e-4 * Math.max(1, want), `graph ${d.loss - d.lossCe} vs hand ${want}`);
  // One trained exit (depth budget 1): nothing to distil from.
  const one = await shallow.step(ds, idx);
  t.true(Math.abs(one.loss - one.lossCe) < 1e-7);
});
