import test from 'ava';
import { VitConfigSchema, backboneSpecs, exitSpecs, initWeights } from '../../src/model/vit.ts';
import { loadDataset } from '../../src/data/index.ts';
import { logPriorBias, Trainer, TrainingError } from '../../src/train/trainer.ts';

const cfg = VitConfigSchema.parse({ patch: 7, dim: 16, depth: 2, heads: 2, mlp: 32 });

test('logit adjustment: the loss sees logits + bias; zero bias is the plain loss; the bias is validated', async (t) => {
  const weights = initWeights([...backboneSpecs(cfg), ...exitSpecs(cfg)], 3);
  const ds = await loadDataset('fashion-mnist', 'test');
  const idx = Uint32Array.from({ length: 8 }, (_, i) => i * 101);
  const mk = (logitAdjust: boolean): Promise<Trainer> =>
    Trainer.create({ cfg, lora: { rank: 2, alpha: 4, targets: ['q', 'v'] }, trainableSet: 'lora+heads', weights, batch: 8, seed: 1, logitAdjust, optimizer: { kind: 'sgd', lr: 0 } });
  const plain = await mk(false);
  const adj = await mk(true);
  t.teardown(() => Promise.all([plain.release(), adj.release()]));
  const l0 = (await plain.step(ds, idx)).loss;
  t.is((await adj.step(ds, idx)).loss, l0, 'zero bias = plain loss');
  // A large bias on the classes no sample of the batch has drives every exit's cross-entropy up by about 20.
  const away = new Float32Array(cfg.classes).fill(20);
  for (const i of idx) away[ds.labels[i]] = 0;
  adj.setLogitBias(away);
  const lAway = (await adj.step(ds, idx)).loss;
  t.true(lAway > l0 + 15, `bias away from the labels raises the loss: ${lAway} vs ${l0}`);
  // The same bias on every class changes nothing (softmax is shift-invariant).
  adj.setLogitBias(new Float32Array(cfg.classes).fill(7));
  t.true(Math.abs((await adj.step(ds, idx)).loss - l0) < 1e-4);
  t.throws(() => adj.setLogitBias([1, 2]), { instanceOf: TrainingError });
  t.throws(() => adj.setLogitBias(new Float32Array(cfg.classes).fill(Number.NaN)), { instanceOf: TrainingError });
  t.throws(() => plain.setLogitBias(new Float32Array(cfg.classes)), { instanceOf: TrainingError });
});

test('logPriorBias is the log of the Laplace-smoothed label prior', (t) => {
  const b = logPriorBias([3, 0, 1]);
  const want = [4 / 7, 1 / 7, 2 / 7].map(Math.log);
  b.forEach((v, i) => t.true(Math.abs(v - want[i]) < 1e-6));
});
