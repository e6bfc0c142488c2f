/**
 * `--personal lora` (Ditto's personal model over the LoRA adapter and exit heads, src/train/personal.ts) on the real
 * tiny ViT backbone and Fashion-MNIST run by onnxruntime: the proximal term λ(v − w) reaches the optimizer exactly,
 * a large λ keeps the personal adapter near the global one while λ = 0 lets it move, the personal loss falls, and the
 * adapter (values and optimizer buffers) survives a checkpoint round trip.
 */
import test from 'ava';
import { loadDataset } from '../../src/data/index.ts';
import { loadBackbone } from '../../src/model/backbone.ts';
import { exitSpecs, type Weights } from '../../src/model/vit.ts';
import type { Optimizer } from '../../src/train/optim.ts';
import { PersonalAdapter, PersonalError, PERSONAL_PREFIX } from '../../src/train/personal.ts';
import { Trainer } from '../../src/train/trainer.ts';
import { Rng } from '../../src/util/rng.ts';

const LR = 2e-3;

async function setup(): Promise<{ trainer: Trainer; heads: Set<string>; train: Awaited<ReturnType<typeof loadDataset>>; skewed: Uint32Array; global: Weights }> {
  const [train, bb] = await Promise.all([loadDataset('fashion-mnist', 'train'), loadBackbone()]);
  const heads = new Set(exitSpecs(bb.cfg).map((s) => s.name));
  const weights = new Map([...bb.weights].filter(([k]) => !heads.has(k)));
  const trainer = await Trainer.create({
    cfg: bb.cfg, lora: { rank: 2, alpha: 8, targets: ['q', 'v'] }, trainableSet: 'lora+heads', weights,
    batch: 16, evalBatch: 50, seed: 3, threads: 1, optimizer: { kind: 'adamw', lr: LR, weightDecay: 0.01 },
  });
  // A label-skewed shard (classes 3 and 7 only), as under Dirichlet 0.1: the personal model has something to learn.
  const skewed = Uint32Array.from([...train.labels.keys()].filter((i) => train.labels[i] === 3 || train.labels[i] === 7).slice(0, 160));
  // A global model that is not at its initialisation (LoRA B is zero at init): a few shared steps on all classes.
  await trainer.trainSteps(train, Uint32Array.from({ length: 320 }, (_, i) => i), 3);
  return { trainer, heads, train, skewed, global: trainer.snapshot() };
}

/** Largest |v − w| over the LoRA tensors. */
function loraDistance(v: Weights, w: Weights): number {
  let d = 0;
  for (const [k, a] of v) if (k.includes('lora_')) for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - w.get(k)![i]));
  return d;
}

test.serial('--personal lora: the proximal term, λ large vs λ = 0, the loss falls, checkpoint round trip', async (t) => {
  const { trainer, heads, train, skewed, global } = await setup();
  t.teardown(() => trainer.release());
  const opts = { lr: LR, weightDecay: 0.01, seed: 11 };

  // The adapter covers every trained tensor: the LoRA and the exit heads.
  const free = PersonalAdapter.create('lora', trainer, heads, { ...opts, lambda: 0 });
  t.deepEqual([...free.names], trainer.trainedSpecs.map((s) => s.name));
  t.true(free.names.some((n) => n.includes('lora_b')) && free.names.some((n) => heads.has(n)));
  t.throws(() => PersonalAdapter.create('lora', trainer, heads, { ...opts, lambda: -1 }), { instanceOf: PersonalError });
  t.throws(() => PersonalAdapter.create('lora', trainer, heads, { ...opts, lambda: Number.NaN }), { instanceOf: PersonalError });

  // The gradient the optimizer receives is the loss gradient plus λ(v − w), exactly.
  const names = free.names;
  const seen: Map<string, Float32Array>[] = [];
  const spy: Optimizer = { lr: 0, stepCount: 0, lastGradNorm: Number.NaN, step: (g: Map<string, Float32Array>) => { seen.push(new Map([...g].map(([k, v]) => [k, Float32Array.from(v as Float32Array)]))); }, bind: () => {}, state: () => { throw new Error('unused'); }, loadState: () => {} } as unknown as Optimizer;
  const anchor: Weights = new Map([...global].map(([k, v]) => [k, Float32Array.from(v, (x, i) => x + 0.01 * Math.sin(i + 1))]));
  const batch = skewed.subarray(0, 16);
  await trainer.step(train, batch, { optimizer: spy, names, rng: new Rng(1) });
  await trainer.step(train, batch, { optimizer: spy, names, rng: new Rng(1), prox: { lambda: 2, anchor } });
  let worst = 0;
  for (const n of names) {
    const [g0, g1] = [seen[0].get(n)!, seen[1].get(n)!];
    const v = trainer.params.get(n)!;
    const w = anchor.get(n)!;
    for (let i = 0; i < v.length; i++) worst = Math.max(worst, Math.abs(g1[i] - g0[i] - 2 * (v[i] - w[i])));
  }
  t.true(worst < 1e-5, `gradient with the proximal term differs from g + λ(v − w) by ${worst}`);

  // λ = 0: the personal LoRA moves away from the global one, and its loss falls from phase to phase.
  const loss1 = await free.train(train, skewed, 15, LR);
  const loss2 = await free.train(train, skewed, 15, LR);
  const dFree = loraDistance(free.tensors(), global);
  t.true(loss2 < loss1, `personal loss ${loss1} then ${loss2}`);
  t.true(dFree > 5 * LR, `λ = 0 moved the personal LoRA by ${dFree}`);
  t.true(loraDistance(trainer.snapshot(), global) > 0, 'the personal tensors are loaded in the trainer after the phase');

  // λ large: the personal LoRA stays within a few Adam steps of the global one (AdamW moves ≈ lr per step).
  trainer.loadParams(global);
  const pinned = PersonalAdapter.create('lora', trainer, heads, { ...opts, lambda: 1e4 });
  await pinned.train(train, skewed, 15, LR);
  await pinned.train(train, skewed, 15, LR);
  const dPinned = loraDistance(pinned.tensors(), global);
  t.log(`loss ${loss1} -> ${loss2}; max |v − w| over the LoRA: λ = 0 ${dFree}, λ = 1e4 ${dPinned}; proximal gradient error ${worst}`);
  t.true(dPinned < 0.3 * dFree, `λ = 1e4 moved the personal LoRA by ${dPinned}, λ = 0 by ${dFree}`);

  // Checkpoint round trip: values and optimizer buffers come back; a missing LoRA tensor is a PersonalError.
  const ck = free.checkpoint()!;
  t.true([...ck.tensors.keys()].some((k) => k.startsWith(PERSONAL_PREFIX) && k.includes('lora_b')));
  const back = PersonalAdapter.create('lora', trainer, heads, { ...opts, lambda: 0 });
  t.false(back.ready);
  back.restore(ck.tensors, ck.meta);
  t.true(back.ready);
  const ck2 = back.checkpoint()!;
  t.deepEqual(ck2.meta, ck.meta);
  t.deepEqual([...ck2.tensors.keys()].sort(), [...ck.tensors.keys()].sort());
  for (const [k, v] of ck.tensors) t.deepEqual([...ck2.tensors.get(k)!], [...v], k);
  const missing = new Map([...ck.tensors].filter(([k]) => !k.includes('lora_a')));
  t.throws(() => back.restore(missing, ck.meta), { instanceOf: PersonalError });
});
