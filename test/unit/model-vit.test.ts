import test from 'ava';
import { readFile, writeFile, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildInferGraph, buildTrainGraph, gradName, logitsName, IMAGES, LABELS, PROTOTYPES, PROTO_MASK } from '../../src/model/graphs.ts';
import { VitConfigSchema, backboneSpecs, exitSpecs, initWeights, loraSpecs, trainableSpecs, validateVitConfig, type LoraConfig, type TrainableSet, type Weights } from '../../src/model/vit.ts';
import { loadBackbone, BackboneError, MODELS_DIR, DEFAULT_BACKBONE } from '../../src/model/backbone.ts';
import { Session, type FeedValue } from '../../src/runtime/index.ts';
import { ConfigError } from '../../src/util/errors.ts';
import { Rng } from '../../src/util/rng.ts';
import { tempDir } from '../temp-dirs.ts';

/** A tiny ViT so graph-level checks run in milliseconds. */
const TINY = VitConfigSchema.parse({ image: 8, patch: 4, dim: 8, depth: 2, heads: 2, mlp: 16, classes: 3 });
const LORA: LoraConfig = { rank: 2, alpha: 4, targets: ['q', 'v', 'fc1'] };
const B = 4;

function randomImages(seed: number, n = B): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n * 64 }, () => r.uniform(-1, 1));
}

function feedsFor(specs: { name: string; shape: number[] }[], w: Weights): Record<string, FeedValue> {
  return Object.fromEntries(specs.map((s) => [s.name, { data: w.get(s.name)!, dims: s.shape }]));
}

type OpForms = { fusedGelu?: boolean; fusedAttention?: boolean; fusedLayerNorm?: boolean };

async function trainSetup(set: TrainableSet, protoWeight = 0, forms: OpForms = {}) {
  const all = initWeights([...backboneSpecs(TINY), ...exitSpecs(TINY), ...loraSpecs(TINY, LORA)], 3);
  // Non-zero LoRA B so that A receives a gradient.
  for (const s of loraSpecs(TINY, LORA)) if (s.name.endsWith('lora_b')) all.get(s.name)!.forEach((_, i, a) => (a[i] = Math.sin(i + 1) * 0.3));
  const lora = set === 'all' ? null : LORA;
  const specs = trainableSpecs(TINY, set, lora);
  const names = new Set(specs.map((s) => s.name));
  const frozen = new Map([...all].filter(([k]) => !names.has(k)));
  const g = buildTrainGraph({ cfg: TINY, lora, trainable: specs, frozen, batch: B, protoWeight, ...forms });
  const s = await Session.create(g.onnx, { threads: 1 });
  const feeds = feedsFor(specs, all);
  feeds[IMAGES] = { data: randomImages(5), dims: [B, 1, 8, 8] };
  feeds[LABELS] = { data: BigInt64Array.from([0n, 2n, 1n, 2n]), dims: [B] };
  if (protoWeight > 0) {
    const r = new Rng(9);
    feeds[PROTOTYPES] = { data: Float32Array.from({ length: 2 * 3 * 8 }, () => r.uniform(-1, 1)), dims: [2, 3, 8] };
    feeds[PROTO_MASK] = { data: Float32Array.from([1, 0, 1, 1, 1, 0]), dims: [2, 3] };
  }
  return { s, specs, all, feeds };
}

/**
 * Directional derivative check per trainable tensor: (L(w + e v) - L(w - e v)) / 2e against grad . v, with a
 * random direction v over that tensor (float32 graph, so tolerance 2% + 2e-4 absolute).
 */
for (const [set, pw] of [['lora+heads', 0], ['heads', 0], ['all', 0], ['lora+heads', 0.5]] as const) {
  test(`training graph gradients match finite differences (${set}${pw ? ', prototype term' : ''})`, async (t) => {
    const { s, specs, all, feeds } = await trainSetup(set, pw);
    const out = await s.run(feeds);
    const r = new Rng(11);
    const eps = 1e-3;
    let nonTrivial = 0;
    for (const sp of specs) {
      const w = all.get(sp.name)!;
      const v = Float32Array.from(w, () => r.uniform(-1, 1));
      const gArr = out[gradName(sp.name)] as Float32Array;
      let analytic = 0;
      for (let i = 0; i < v.length; i++) analytic += gArr[i] * v[i];
      const lossAt = async (sign: number): Promise<number> => {
        const f = { ...feeds, [sp.name]: { data: Float32Array.from(w, (x, i) => x + sign * eps * v[i]), dims: sp.shape } };
        return Number((await s.run(f, ['loss'])).loss[0]);
      };
      const numeric = ((await lossAt(1)) - (await lossAt(-1))) / (2 * eps);
      if (Math.abs(analytic) > 1e-3) nonTrivial++;
      t.true(Math.abs(numeric - analytic) <= 2e-2 * Math.abs(analytic) + 2e-4, `${sp.name}: numeric ${numeric} vs analytic ${analytic}`);
    }
    t.true(nonTrivial >= specs.length / 2, 'most tensors get a non-trivial gradient');
    await s.release();
  });
}

// The default graph uses the composites (LayerNormLinear, GeluLinear, Attention) and a CLS-only last block; each
// alternative form differentiates plainer ops. All must give the same loss and gradients.
for (const set of ['lora+heads', 'all'] as const) {
  test(`every op form gives the same loss and gradients (${set})`, async (t) => {
    const ref = await trainSetup(set);
    const want = await ref.s.run(ref.feeds);
    const forms: [string, OpForms][] = [['composed GELU', { fusedGelu: false }], ['unfused attention', { fusedAttention: false }], ['ONNX LayerNormalization', { fusedLayerNorm: true }]];
    for (const [label, f] of forms) {
      const alt = await trainSetup(set, 0, f);
      const got = await alt.s.run(alt.feeds);
      for (const name of ['loss', ...ref.specs.map((s) => gradName(s.name))]) {
        const a = want[name] as Float32Array;
        const b = got[name] as Float32Array;
        const scale = Math.max(1e-3, ...Array.from(a, Math.abs));
        const worst = Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
        t.true(worst <= 1e-4 * scale, `${label}: ${name} differs by ${worst} (scale ${scale})`);
      }
      await alt.s.release();
    }
    await ref.s.release();
  });
}

test('LoRA with B = 0 leaves the model unchanged; exits stop early without changing earlier exits', async (t) => {
  const w = initWeights([...backboneSpecs(TINY), ...exitSpecs(TINY), ...loraSpecs(TINY, LORA)], 4);
  const loraT = loraSpecs(TINY, LORA);
  const frozenAll = new Map([...w].filter(([k]) => !k.includes('lora')));
  const images = { data: randomImages(6), dims: [B, 1, 8, 8] } as FeedValue;
  const plain = await Session.create(buildInferGraph({ cfg: TINY, lora: null, trainable: [], frozen: frozenAll, batch: B }).onnx, { threads: 1 });
  const withLora = await Session.create(buildInferGraph({ cfg: TINY, lora: LORA, trainable: loraT, frozen: frozenAll, batch: B }).onnx, { threads: 1 });
  const early = await Session.create(buildInferGraph({ cfg: TINY, lora: null, trainable: [], frozen: frozenAll, batch: B, blocks: 1 }).onnx, { threads: 1 });
  const a = await plain.run({ [IMAGES]: images });
  const b = await withLora.run({ [IMAGES]: images, ...feedsFor(loraT, w) });
  const c = await early.run({ [IMAGES]: images });
  t.deepEqual(Array.from(a[logitsName(1)] as Float32Array), Array.from(b[logitsName(1)] as Float32Array));
  // The early graph computes its last block for the CLS token only: equal up to float rounding.
  const a0 = a[logitsName(0)] as Float32Array;
  const c0 = c[logitsName(0)] as Float32Array;
  t.is(c0.length, a0.length);
  t.true(a0.every((v, i) => Math.abs(v - c0[i]) <= 1e-5 * Math.max(1, Math.abs(v))), 'exit 0 of the one-block graph equals exit 0 of the full graph');
  t.false(logitsName(1) in c);
  // A non-zero B changes the output.
  const w2 = new Map(w);
  for (const s of loraT) if (s.name.endsWith('lora_b')) w2.set(s.name, new Float32Array(s.shape[0] * s.shape[1]).fill(0.5));
  const d = await withLora.run({ [IMAGES]: images, ...feedsFor(loraT, w2) });
  t.notDeepEqual(Array.from(a[logitsName(1)] as Float32Array), Array.from(d[logitsName(1)] as Float32Array));
});

test('configs are validated with clear errors', (t) => {
  t.throws(() => validateVitConfig({ ...TINY, patch: 3 }), { instanceOf: ConfigError, message: /multiple of patch/ });
  t.throws(() => validateVitConfig({ ...TINY, heads: 3 }), { instanceOf: ConfigError, message: /divisible by heads/ });
  t.throws(() => trainableSpecs(TINY, 'lora+heads', null), { instanceOf: ConfigError });
});

test('LoRA and trainable sets have the documented shapes and init', (t) => {
  const specs = loraSpecs(TINY, LORA);
  t.is(specs.length, 2 * 3 * 2);
  const a = specs.find((s) => s.name === 'blocks.0.mlp.fc1.lora_a')!;
  const b = specs.find((s) => s.name === 'blocks.0.mlp.fc1.lora_b')!;
  t.deepEqual(a.shape, [8, 2]);
  t.deepEqual(b.shape, [2, 16]);
  const w = initWeights(specs, 1);
  t.true(w.get(b.name)!.every((x) => x === 0));
  t.true(w.get(a.name)!.some((x) => x !== 0) && w.get(a.name)!.every((x) => Math.abs(x) <= 1 / Math.sqrt(8)));
  t.is(trainableSpecs(TINY, 'heads', null).length, 2 * 4);
});

test('the embedded backbone loads, matches its manifest, and a corrupted copy is refused', async (t) => {
  const bb = await loadBackbone();
  t.is(bb.manifest.tensors.length, bb.weights.size);
  t.is(bb.manifest.testAccuracy.length, bb.cfg.depth);
  t.true(bb.manifest.testAccuracy[bb.cfg.depth - 1] > 0.8, 'the committed backbone is actually pretrained');
  const dir = await tempDir('fmfl-bb-');
  await copyFile(join(MODELS_DIR, `${DEFAULT_BACKBONE}.json`), join(dir, `${DEFAULT_BACKBONE}.json`));
  const bytes = await readFile(join(MODELS_DIR, `${DEFAULT_BACKBONE}.fmfl`));
  bytes[bytes.length >> 1] ^= 0xff;
  await writeFile(join(dir, `${DEFAULT_BACKBONE}.fmfl`), bytes);
  await t.throwsAsync(loadBackbone(DEFAULT_BACKBONE, dir), { instanceOf: BackboneError, message: /checksum/ });
  await t.throwsAsync(loadBackbone('no-such-model', dir), { instanceOf: BackboneError, message: /npm run pretrain/ });
});
