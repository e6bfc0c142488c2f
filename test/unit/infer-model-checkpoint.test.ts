import test from 'ava';
import { join } from 'node:path';
import { saveCheckpoint, CheckpointError } from '../../src/model/checkpoint.ts';
import { loadModelCheckpoint, saveModelCheckpoint, prototypesFromStats, ModelCheckpointError, type ModelCheckpoint } from '../../src/model/model-checkpoint.ts';
import { VitConfigSchema, initWeights, trainableSpecs, type LoraConfig } from '../../src/model/vit.ts';
import { loadBackbone } from '../../src/model/backbone.ts';
import { tempDir } from '../temp-dirs.ts';

const TINY = VitConfigSchema.parse({ image: 8, patch: 4, dim: 8, depth: 2, heads: 2, mlp: 16, classes: 3 });
const LORA: LoraConfig = { rank: 2, alpha: 4, targets: ['q', 'v'] };

function model(): ModelCheckpoint {
  const specs = trainableSpecs(TINY, 'lora+heads', LORA);
  return {
    backbone: 'tiny', cfg: TINY, lora: LORA, trainableSet: 'lora+heads', version: 'r7-abc', round: 7, source: 'federated',
    weights: initWeights(specs, 3),
    prototypes: prototypesFromStats({ exits: 2, classes: 3, dim: 8, sums: Float64Array.from({ length: 48 }, (_, i) => i), counts: Float64Array.from([2, 0, 4, 1, 1, 1]) }),
    info: { note: 'test' },
  };
}

test('a model checkpoint round-trips: metadata, trainable tensors, prototypes', async (t) => {
  const dir = await tempDir('fmfl-mck-');
  const m = model();
  await saveModelCheckpoint(join(dir, 'm.fmfl'), m);
  const back = await loadModelCheckpoint(join(dir, 'm.fmfl'));
  t.is(back.version, 'r7-abc');
  t.is(back.round, 7);
  t.is(back.source, 'federated');
  t.deepEqual(back.lora, LORA);
  t.deepEqual(back.cfg, TINY);
  t.deepEqual([...back.weights.keys()].sort(), [...m.weights.keys()].sort());
  for (const [k, v] of m.weights) t.deepEqual(Array.from(back.weights.get(k)!), Array.from(v));
  t.deepEqual(Array.from(back.prototypes!.counts), [2, 0, 4, 1, 1, 1]);
  // mean = sum / count; a class without samples keeps a zero prototype
  t.deepEqual(Array.from(back.prototypes!.means.subarray(0, 8)), Array.from({ length: 8 }, (_, k) => k / 2));
  t.true(back.prototypes!.means.subarray(8, 16).every((v) => v === 0));
  t.deepEqual(back.info, { note: 'test' });
});

test('content-level problems are refused with a reason', async (t) => {
  const dir = await tempDir('fmfl-mck-');
  const m = model();
  const missing = new Map(m.weights);
  missing.delete('exits.1.head.bias');
  await t.throwsAsync(saveModelCheckpoint(join(dir, 'x.fmfl'), { ...m, weights: missing }), { instanceOf: ModelCheckpointError, message: /exits\.1\.head\.bias is missing/ });
  await saveCheckpoint(join(dir, 'plain.fmfl'), { a: new Float32Array(2) }, { kind: 'backbone' });
  await t.throwsAsync(loadModelCheckpoint(join(dir, 'plain.fmfl')), { instanceOf: ModelCheckpointError, message: /not an fmfl model checkpoint/ });
  // A NaN in a tensor, written through the generic format with valid metadata.
  await saveModelCheckpoint(join(dir, 'ok.fmfl'), m);
  const good = await loadModelCheckpoint(join(dir, 'ok.fmfl'));
  const tensors = new Map([...good.weights].map(([k, v]) => [k, { shape: trainableSpecs(TINY, 'lora+heads', LORA).find((s) => s.name === k)!.shape, data: Float32Array.from(v) }]));
  tensors.get('blocks.0.attn.q.lora_a')!.data[0] = NaN;
  const md = { kind: 'fmfl-model', format: 1, backbone: 'tiny', config: TINY, lora: LORA, trainableSet: 'lora+heads', version: 'v', round: 0, source: 'centralized' };
  await saveCheckpoint(join(dir, 'nan.fmfl'), tensors, md as never);
  await t.throwsAsync(loadModelCheckpoint(join(dir, 'nan.fmfl')), { instanceOf: ModelCheckpointError, message: /non-finite/ });
  await t.throwsAsync(loadModelCheckpoint(join(dir, 'absent.fmfl')), { instanceOf: CheckpointError });
});

test('a federation state checkpoint (src/round) loads as a federated model: global tensors, LoRA from shapes, prototypes', async (t) => {
  const bb = await loadBackbone();
  const lora: LoraConfig = { rank: 4, alpha: 16, targets: ['q', 'v', 'fc1'] };
  const specs = trainableSpecs(bb.cfg, 'lora+heads', lora);
  const w = initWeights(specs, 9);
  const tensors = new Map<string, Float32Array>();
  for (const [k, v] of w) tensors.set(`global/${k}`, v);
  tensors.set('residual/blocks.0.attn.q.lora_a', new Float32Array(3));
  const D = bb.cfg.dim;
  tensors.set('proto/1', Float32Array.from({ length: 10 * D }, (_, i) => i % D));
  const dir = await tempDir('fmfl-mck-');
  const path = join(dir, 'federation.fmfl');
  await saveCheckpoint(path, tensors, { kind: 'federation', protocol: 'leader', version: 12, hash: 'abcdef0123456789', prototypeCounts: [{ exit: 1, dim: D, counts: [2, 2, 2, 2, 2, 2, 2, 2, 2, 0] }] });
  const m = await loadModelCheckpoint(path);
  t.is(m.source, 'federated');
  t.is(m.version, 'fed-r12-abcdef01');
  t.is(m.round, 12);
  t.deepEqual(m.lora, lora);
  t.is(m.trainableSet, 'lora+heads');
  t.is(m.weights.size, specs.length);
  t.deepEqual(Array.from(m.weights.get('exits.3.head.bias')!), Array.from(w.get('exits.3.head.bias')!));
  const p = m.prototypes!;
  t.is(p.counts[1 * 10 + 0], 2);
  t.is(p.counts[0], 0, 'exits without statistics have no prototypes');
  t.is(p.means[(1 * 10 + 0) * D + 5], 5 / 2);
  const broken = new Map(tensors);
  broken.delete('global/exits.0.head.weight');
  await saveCheckpoint(path, broken, { kind: 'federation', version: 1, hash: 'x', prototypeCounts: [] });
  await t.throwsAsync(loadModelCheckpoint(path), { instanceOf: ModelCheckpointError, message: /exits\.0\.head\.weight/ });
});
