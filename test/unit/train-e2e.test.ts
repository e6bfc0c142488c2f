import test from 'ava';
import { loadDataset, balancedIndices } from '../../src/data/index.ts';
import { loadBackbone } from '../../src/model/backbone.ts';
import { exitSpecs } from '../../src/model/vit.ts';
import { Trainer } from '../../src/train/trainer.ts';

test('LoRA + heads fine-tuning on Fashion-MNIST from the embedded backbone: loss falls, held-out accuracy beats chance', async (t) => {
  const [train, testSet, bb] = await Promise.all([loadDataset('fashion-mnist', 'train'), loadDataset('fashion-mnist', 'test'), loadBackbone()]);
  const heads = new Set(exitSpecs(bb.cfg).map((s) => s.name));
  const weights = new Map([...bb.weights].filter(([k]) => !heads.has(k))); // fresh exit heads
  const trainer = await Trainer.create({
    cfg: bb.cfg, lora: { rank: 4, alpha: 8, targets: ['q', 'v'] }, trainableSet: 'lora+heads', weights,
    batch: 32, evalBatch: 100, seed: 3, threads: 1, optimizer: { kind: 'adamw', lr: 2e-3, weightDecay: 0.01 },
  });
  t.teardown(() => trainer.release());
  const before = Float32Array.from(trainer.params.get('blocks.0.attn.q.lora_b')!);
  t.true(before.every((x) => x === 0));
  const losses: number[] = [];
  await trainer.trainSteps(train, balancedIndices(train.labels, 64, 1), 60, (_i, l) => losses.push(l));
  const head = losses.slice(0, 5).reduce((a, b) => a + b, 0) / 5;
  const tail = losses.slice(-5).reduce((a, b) => a + b, 0) / 5;
  t.true(tail < head * 0.8, `loss fell from ${head.toFixed(3)} to ${tail.toFixed(3)}`);
  t.true(trainer.params.get('blocks.0.attn.q.lora_b')!.some((x) => x !== 0), 'LoRA B moved');
  const ev = await trainer.evaluate(testSet, balancedIndices(testSet.labels, 30, 2));
  t.is(ev.n, 300);
  t.is(ev.accuracy.length, 4);
  t.true(ev.accuracy[3] > 0.4, `last-exit held-out accuracy ${ev.accuracy[3]} is well above chance (0.1)`);
  // Prototype statistics: counts per exit equal the samples seen per class.
  const ps = await trainer.prototypeStats(testSet, balancedIndices(testSet.labels, 5, 2));
  t.deepEqual(Array.from(ps.counts.subarray(0, 10)), new Array(10).fill(5));
});
