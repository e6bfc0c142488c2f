import test from 'ava';
import { loadDataset, balancedIndices } from '../../src/data/index.ts';
import { loadBackbone } from '../../src/model/backbone.ts';
import { modelTensors, tensorsUpToDepth, trainableTensors } from '../../src/model/architecture.ts';
import { buildTrainGraph } from '../../src/model/graphs.ts';
import { exitSpecs } from '../../src/model/vit.ts';
import { Trainer } from '../../src/train/trainer.ts';

test('tensorsUpToDepth: depth k reads blocks 0..k-1 and exits 0..k-1 only', async (t) => {
  const bb = await loadBackbone();
  const lora = { rank: 4, alpha: 8, targets: ['q', 'v'] as ('q' | 'v')[] };
  const two = tensorsUpToDepth(bb.cfg, lora, 2);
  t.true(two.has('blocks.1.attn.q.lora_a') && two.has('exits.1.head.weight') && two.has('blocks.0.attn.v.lora_b'));
  t.false([...two].some((n) => n.startsWith('blocks.2.') || n.startsWith('blocks.3.') || n.startsWith('exits.2.') || n.startsWith('exits.3.')));
  t.true(tensorsUpToDepth(bb.cfg, lora, bb.cfg.depth).has('exits.3.head.weight'));
  t.throws(() => tensorsUpToDepth(bb.cfg, lora, 0));
});

test('a depth-2 trainer trains only blocks 1..2 and exits 1..2 and serves exits 1..2', async (t) => {
  const [train, testSet, bb] = await Promise.all([loadDataset('fashion-mnist', 'train'), loadDataset('fashion-mnist', 'test'), loadBackbone()]);
  const heads = new Set(exitSpecs(bb.cfg).map((s) => s.name));
  const weights = new Map([...bb.weights].filter(([k]) => !heads.has(k)));
  const trainer = await Trainer.create({
    cfg: bb.cfg, lora: { rank: 2, alpha: 8, targets: ['q', 'v'] }, trainableSet: 'lora+heads', weights, maxDepth: 2,
    batch: 16, evalBatch: 50, seed: 3, threads: 1, optimizer: { kind: 'adamw', lr: 2e-3, weightDecay: 0.01 },
  });
  t.teardown(() => trainer.release());
  t.is(trainer.depth, 2);
  t.true(trainer.trainedSpecs.length < trainer.specs.length);
  const before = trainer.snapshot();
  await trainer.trainSteps(train, balancedIndices(train.labels, 8, 1), 4);
  const after = trainer.snapshot();
  const moved = (n: string): boolean => after.get(n)!.some((x, i) => x !== before.get(n)![i]);
  t.true(moved('blocks.1.attn.q.lora_b') && moved('exits.1.head.weight') && moved('exits.0.head.weight'));
  t.false(moved('blocks.2.attn.q.lora_b') || moved('blocks.3.attn.v.lora_a') || moved('exits.3.head.weight'), 'tensors past the budget stay put');
  const ev = await trainer.evaluate(testSet, balancedIndices(testSet.labels, 5, 2));
  t.is(ev.accuracy.length, 2);
  const ps = await trainer.prototypeStats(testSet, balancedIndices(testSet.labels, 2, 2));
  t.is(ps.exits, 2);
});

test('the depth-2 training graph is cut after block 2: fewer nodes, gradients only for the tensors within the budget', async (t) => {
  const bb = await loadBackbone();
  const lora = { rank: 2, alpha: 4, targets: ['q', 'v'] as ('q' | 'v')[] };
  const specs = trainableTensors(bb.cfg, 'lora+heads', lora);
  const trainable = new Set(specs.map((s) => s.name));
  const frozen = new Map([...bb.weights].filter(([k]) => !trainable.has(k)));
  for (const s of modelTensors(bb.cfg, lora)) if (!trainable.has(s.name) && !frozen.has(s.name)) t.fail(`missing ${s.name}`);
  const reach = tensorsUpToDepth(bb.cfg, lora, 2);
  const cut = buildTrainGraph({ cfg: bb.cfg, lora, trainable: specs.filter((s) => reach.has(s.name)), frozen, batch: 4, blocks: 2 });
  const full = buildTrainGraph({ cfg: bb.cfg, lora, trainable: specs, frozen, batch: 4 });
  t.true(cut.nodes < 0.6 * full.nodes, `${cut.nodes} graph nodes at depth 2 vs ${full.nodes} at depth ${bb.cfg.depth}`);
  t.true(cut.params.every((p) => /^(blocks|exits)\.[01]\./.test(p)));
});
