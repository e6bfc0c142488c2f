/**
 * Trainers of one process with byte-identical graphs share their onnxruntime sessions (Session.shared): each
 * trainer still trains its own tensors, interleaved steps give exactly the losses and weights of private sessions,
 * and the shared sessions go with the last trainer released.
 */
import test from 'ava';
import { loadDataset, balancedIndices } from '../../src/data/index.ts';
import { backboneSpecs, exitSpecs, initWeights, VitConfigSchema } from '../../src/model/vit.ts';
import { Session } from '../../src/runtime/index.ts';
import { Trainer, type TrainerOptions } from '../../src/train/trainer.ts';

const CFG = VitConfigSchema.parse({ patch: 7, dim: 16, depth: 2, heads: 2, mlp: 32 });
const BACKBONE = initWeights(backboneSpecs(CFG), 11);

function opts(seed: number, share: boolean): TrainerOptions {
  return {
    cfg: CFG, lora: { rank: 2, alpha: 4, targets: ['q', 'v'] }, trainableSet: 'lora+heads', weights: BACKBONE,
    batch: 16, evalBatch: 32, seed, threads: 1, optimizer: { kind: 'adamw', lr: 3e-3 }, shareSessions: share,
  };
}

test.serial('two trainers share one train and one eval session; concurrent steps match private sessions exactly', async (t) => {
  const train = await loadDataset('fashion-mnist', 'train');
  const idxA = balancedIndices(train.labels, 8, 1);
  const idxB = balancedIndices(train.labels, 8, 2);
  const before = Session.sharedCount();
  const [a, b] = await Promise.all([Trainer.create(opts(1, true)), Trainer.create(opts(2, true))]);
  t.is(Session.sharedCount() - before, 2, 'one shared training session and one shared evaluation session');
  const [pa, pb] = await Promise.all([Trainer.create(opts(1, false)), Trainer.create(opts(2, false))]);
  t.is(Session.sharedCount() - before, 2, 'private sessions are not pooled');
  const head = [...a.params.keys()].find((k) => k.startsWith('exits.0.head'))!;
  t.notDeepEqual(Array.from(a.params.get(head)!), Array.from(b.params.get(head)!), 'different seeds, different heads');

  // Interleave the shared trainers' steps (both queued at once on the same sessions), and run the private ones alone.
  const [la, lb] = await Promise.all([a.trainSteps(train, idxA, 6), b.trainSteps(train, idxB, 6)]);
  const ra = await pa.trainSteps(train, idxA, 6);
  const rb = await pb.trainSteps(train, idxB, 6);
  t.is(la, ra);
  t.is(lb, rb);
  t.not(la, lb);
  for (const [k, v] of a.params) t.deepEqual(Array.from(v), Array.from(pa.params.get(k)!), k);
  for (const [k, v] of b.params) t.deepEqual(Array.from(v), Array.from(pb.params.get(k)!), k);
  const testSet = await loadDataset('fashion-mnist', 'test');
  const ti = balancedIndices(testSet.labels, 5, 3);
  const [ea, eb] = await Promise.all([a.evaluate(testSet, ti), b.evaluate(testSet, ti)]);
  t.deepEqual(ea, await pa.evaluate(testSet, ti));
  t.deepEqual(eb, await pb.evaluate(testSet, ti));

  await a.release();
  t.is(Session.sharedCount() - before, 2, 'still held by the other trainer');
  const again = await b.evaluate(testSet, ti);
  t.deepEqual(again, eb, 'the remaining trainer still runs');
  await b.release();
  await b.release();
  t.is(Session.sharedCount() - before, 0, 'released with the last handle (release is idempotent)');
  await Promise.all([pa.release(), pb.release()]);
  await t.throwsAsync(b.evaluate(testSet, ti), { message: /released session/ });
});
