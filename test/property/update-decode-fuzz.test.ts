import test from 'ava';
import fc from 'fast-check';
import { decodeUpdate, encodeUpdate, manifestDigest, UpdateError, UpdateRefusal, type ModelUpdate } from '../../src/update/index.ts';
import * as pb from '../../src/update/pb/update.ts';
import { Rng } from '../../src/util/rng.ts';
import { vitTinyManifest, randomDeltas, makeUpdate } from '../unit/update-vit-tiny.fixture.ts';

const manifest = vitTinyManifest(2, 16, 2, 4);
const rng = new Rng(5);
const deltas = randomDeltas(manifest, rng, 2);
const prototypes: ModelUpdate['prototypes'] = [{ exit: 1, dim: 16, counts: [3, 0, 1, 7], sums: new Float32Array(64).map((_, i) => (i >= 16 && i < 32 ? 0 : (i % 7) - 3)) }];
const base = makeUpdate(deltas, { loraRank: 2, prototypes });
const valid = [
  encodeUpdate(base, manifest).bytes,
  encodeUpdate(base, manifest, { bits: 8, seed: 1, topk: { fraction: 0.2, scope: 'global' } }).bytes,
  encodeUpdate(base, manifest, { bits: 4, seed: 2, topk: { fraction: 0.05, scope: 'tensor' }, prototypeBits: 16 }).bytes,
  encodeUpdate(base, manifest, { bits: 16, brotli: true }).bytes,
  encodeUpdate(base, manifest, { bits: 8, seed: 3, tensorRefs: 'name', topk: { fraction: 0.5, scope: 'tensor' } }).bytes,
  encodeUpdate(base, manifest, { bits: 8, seed: 4, topk: { fraction: 0.03, scope: 'global' } }).bytes,
];

/** Decoding either succeeds with a manifest-conformant update or throws UpdateError; anything else fails. */
function decodesOrRefuses(bytes: Uint8Array): boolean {
  try {
    const u = decodeUpdate(bytes, manifest);
    for (const s of manifest.tensors) {
      const d = u.deltas.get(s.name);
      if (d === undefined || !d.every(Number.isFinite)) return false;
    }
    return true;
  } catch (err) {
    return err instanceof UpdateError && Object.values(UpdateRefusal).includes(err.reason);
  }
}

test('valid encodings decode', (t) => {
  for (const b of valid) {
    const u = decodeUpdate(b, manifest);
    t.is(u.sender, base.sender);
    t.is(u.round, 3);
    t.deepEqual(u.prototypes[0].counts, [3, 0, 1, 7]);
  }
});

test('random bytes: the decoder only ever throws its typed error', (t) => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), decodesOrRefuses), { numRuns: 400 });
  t.pass();
});

test('mutated valid encodings: typed refusal or a valid update, never a crash', (t) => {
  const mutation = fc.record({
    which: fc.integer({ min: 0, max: valid.length - 1 }),
    edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
    cut: fc.option(fc.nat()),
    tail: fc.uint8Array({ maxLength: 8 }),
  });
  fc.assert(fc.property(mutation, ({ which, edits, cut, tail }) => {
    let b = Uint8Array.from(valid[which]);
    for (const [pos, v] of edits) b[pos % b.length] = v;
    if (cut !== null) b = b.subarray(0, cut % (b.length + 1));
    const out = new Uint8Array(b.length + tail.length);
    out.set(b);
    out.set(tail, b.length);
    return decodesOrRefuses(out);
  }), { numRuns: 400 });
  t.pass();
});

function refusal(t: import('ava').ExecutionContext, bytes: Uint8Array, reason: UpdateRefusal, limits = {}): void {
  const err = t.throws(() => decodeUpdate(bytes, manifest, limits), { instanceOf: UpdateError });
  t.is(err?.reason, reason, err?.message);
}

function rewrap(mutate: (u: pb.Update) => void, from = 0): Uint8Array {
  const env = pb.UpdateEnvelope.decode(Uint8Array.from(valid[from]));
  const u = pb.Update.decode(env.body);
  mutate(u);
  const body = pb.Update.encode(u);
  return pb.UpdateEnvelope.encode({ compression: pb.PayloadCompression.COMPRESSION_NONE, bodyLength: body.length, body });
}

test('each validation rule refuses with its reason', (t) => {
  refusal(t, valid[0], UpdateRefusal.TOO_LARGE, { maxMessageBytes: 100 });
  refusal(t, rewrap((u) => { u.formatVersion = 1; }), UpdateRefusal.UNSUPPORTED_VERSION);
  refusal(t, rewrap((u) => { u.sender = ''; }), UpdateRefusal.BAD_HEADER);
  refusal(t, rewrap((u) => { u.sampleCount = 0n; }), UpdateRefusal.BAD_HEADER);
  refusal(t, rewrap((u) => { u.round = 2n ** 60n; }), UpdateRefusal.BAD_HEADER);
  refusal(t, rewrap((u) => { u.loraRank = 0; }), UpdateRefusal.BAD_HEADER);
  refusal(t, rewrap((u) => { u.loraRank = 3; }, 4), UpdateRefusal.BAD_SHAPE);
  refusal(t, rewrap((u) => { u.loraRank = 3; }), UpdateRefusal.BAD_LENGTH); // dense: n follows the rank, the values do not
  refusal(t, rewrap((u) => { u.tensors[0].shape = [16, 3]; }), UpdateRefusal.BAD_SHAPE);
  refusal(t, rewrap((u) => { u.tensors[0].name = 'blocks.9.evil'; u.tensors[0].tensorSkip = 0; }), UpdateRefusal.BAD_SHAPE);
  refusal(t, rewrap((u) => { u.tensors[0].name = 'blocks.0.attn.q.lora_a'; u.tensors[0].tensorSkip = 1; }), UpdateRefusal.MALFORMED);
  refusal(t, rewrap((u) => { u.tensors[0].tensorSkip = manifest.tensors.length; }), UpdateRefusal.BAD_SHAPE);
  refusal(t, rewrap((u) => { u.tensors.at(-1)!.tensorSkip = 2 ** 32 - 1; }), UpdateRefusal.BAD_SHAPE);
  refusal(t, rewrap((u) => { u.manifestDigest = new Uint8Array(0); }), UpdateRefusal.MANIFEST_MISMATCH);
  refusal(t, rewrap((u) => { u.manifestDigest = u.manifestDigest.map((b) => b ^ 1); }), UpdateRefusal.MANIFEST_MISMATCH);
  // the first tensor again, by name (positions cannot repeat: they strictly increase)
  refusal(t, rewrap((u) => { u.tensors[1].name = manifest.tensors[u.tensors[0].tensorSkip].name; u.tensors[1].tensorSkip = 0; u.tensors[1].shape = [...manifest.tensors[u.tensors[0].tensorSkip].shape.map((d, ax) => (ax === manifest.tensors[u.tensors[0].tensorSkip].loraAxis ? 2 : d))]; }), UpdateRefusal.BAD_SHAPE);
  refusal(t, rewrap((u) => { u.tensors[0].values = u.tensors[0].values.subarray(4); }), UpdateRefusal.BAD_LENGTH);
  refusal(t, rewrap((u) => { u.tensors[0].values.set([0, 0, 0xc0, 0x7f], 0); }), UpdateRefusal.NON_FINITE);
  refusal(t, rewrap((u) => { u.tensors[0].blockSize = 64; }), UpdateRefusal.BAD_CODEC_PARAMS);
  refusal(t, rewrap((u) => { u.tensorCodec = pb.ValueCodec.VALUE_CODEC_UNSPECIFIED; }), UpdateRefusal.UNKNOWN_CODEC);
  // a sparse tensor without index codec, neither its own nor the update's
  refusal(t, rewrap((u) => { u.tensorIndexCodec = pb.IndexCodec.INDEX_DENSE; }, 1), UpdateRefusal.UNKNOWN_CODEC);
  // dense (nnz 0) with an index codec
  refusal(t, rewrap((u) => { u.tensors[0].indexCodec = pb.IndexCodec.INDEX_BITMAP; }), UpdateRefusal.BAD_CODEC_PARAMS);
  refusal(t, rewrap((u) => { u.prototypes[0].sums!.tensorSkip = 1; }), UpdateRefusal.BAD_PROTOTYPES);
  refusal(t, rewrap((u) => { u.tensors[0].nnz = 10_000; }, 1), UpdateRefusal.BAD_CODEC_PARAMS);
  // sparse with an out-of-range position (delta varint: first gap 200 >= n = 32)
  refusal(t, rewrap((u) => {
    Object.assign(u.tensors[0], { indexCodec: pb.IndexCodec.INDEX_DELTA_VARINT, nnz: 1, indices: Uint8Array.of(200, 1), values: new Uint8Array(4) });
  }), UpdateRefusal.BAD_INDEX);
  // Golomb-Rice: parameter above 20, unary run past the tensor end, trailing byte
  for (const [indices, reason] of [[Uint8Array.of(21, 0), UpdateRefusal.BAD_CODEC_PARAMS], [Uint8Array.of(0, 0xff, 0xff, 0xff, 0xff, 0xff), UpdateRefusal.BAD_INDEX], [Uint8Array.of(0, 0, 0), UpdateRefusal.BAD_INDEX]] as const) {
    refusal(t, rewrap((u) => {
      Object.assign(u.tensors[0], { indexCodec: pb.IndexCodec.INDEX_RICE, nnz: 1, indices, values: new Uint8Array(4) });
    }), reason);
  }
  // overlong varint
  refusal(t, rewrap((u) => {
    Object.assign(u.tensors[0], { indexCodec: pb.IndexCodec.INDEX_DELTA_VARINT, nnz: 1, indices: Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x10), values: new Uint8Array(4) });
  }), UpdateRefusal.BAD_INDEX);
  // q8 code -128 is outside the symmetric range
  refusal(t, rewrap((u) => {
    const v = new Uint8Array(4 + 32);
    new DataView(v.buffer).setFloat32(0, 1, true);
    v[4] = 0x80;
    Object.assign(u.tensors[0], { codec: pb.ValueCodec.VALUE_Q8, blockSize: 32, values: v });
  }), UpdateRefusal.NON_FINITE);
  // q8 with a block size below the minimum
  refusal(t, rewrap((u) => {
    Object.assign(u.tensors[0], { codec: pb.ValueCodec.VALUE_Q8, blockSize: 1, values: new Uint8Array(4 * 32 + 32) });
  }), UpdateRefusal.BAD_CODEC_PARAMS);
  refusal(t, rewrap((u) => { u.prototypes[0].counts[0] = 0n; }), UpdateRefusal.BAD_PROTOTYPES);
  refusal(t, rewrap((u) => { u.prototypes[0].exit = 7; }), UpdateRefusal.BAD_PROTOTYPES);
  refusal(t, rewrap((u) => { u.prototypes.push(u.prototypes[0]); }), UpdateRefusal.BAD_PROTOTYPES);
  refusal(t, rewrap((u) => { u.tensors = Array.from({ length: 5 }, () => u.tensors[0]); }), UpdateRefusal.MALFORMED, { maxTensors: 4 });
});

test('manifest digest: a peer with another backbone is refused when tensors are referenced by index', (t) => {
  const other = vitTinyManifest(2, 16, 2, 5); // 5 classes instead of 4
  const err = t.throws(() => decodeUpdate(valid[0], other), { instanceOf: UpdateError });
  t.is(err?.reason, UpdateRefusal.MANIFEST_MISMATCH);
  // by name, the same mismatch surfaces as a shape refusal
  const byName = encodeUpdate({ ...base, prototypes: [] }, manifest, { tensorRefs: 'name' }).bytes;
  t.is(t.throws(() => decodeUpdate(byName, other), { instanceOf: UpdateError })?.reason, UpdateRefusal.BAD_SHAPE);
  // the digest ignores the rank axis: a manifest declaring another default rank still matches
  t.notThrows(() => decodeUpdate(valid[0], vitTinyManifest(8, 16, 2, 4)));
});

test('brotli: bombs and length lies are refused', (t) => {
  const { brotliCompressSync } = require_zlib();
  const big = new Uint8Array(10_000_000);
  const bomb = pb.UpdateEnvelope.encode({ compression: pb.PayloadCompression.COMPRESSION_BROTLI, bodyLength: 1000, body: new Uint8Array(brotliCompressSync(big)) });
  refusal(t, bomb, UpdateRefusal.BAD_COMPRESSION);
  const env = pb.UpdateEnvelope.decode(valid[3]);
  refusal(t, pb.UpdateEnvelope.encode({ ...env, bodyLength: env.bodyLength + 1 }), UpdateRefusal.BAD_COMPRESSION);
  refusal(t, pb.UpdateEnvelope.encode({ ...env, bodyLength: 2 ** 31 }), UpdateRefusal.TOO_LARGE);
  refusal(t, pb.UpdateEnvelope.encode({ ...env, body: env.body.subarray(0, env.body.length - 3) }), UpdateRefusal.BAD_COMPRESSION);
});

import * as zlib from 'node:zlib';
function require_zlib(): typeof zlib {
  return zlib;
}

test('structured fuzz: random protobuf Updates (valid framing, hostile contents) only raise UpdateError', (t) => {
  const codecs = Object.values(pb.ValueCodec).filter((v): v is pb.ValueCodec => typeof v === 'string');
  const indexCodecs = Object.values(pb.IndexCodec).filter((v): v is pb.IndexCodec => typeof v === 'string');
  const body = {
    codec: fc.constantFrom(...codecs),
    blockSize: fc.oneof(fc.constant(0), fc.nat({ max: 300 })),
    values: fc.uint8Array({ maxLength: 200 }),
    indexCodec: fc.constantFrom(...indexCodecs),
    nnz: fc.nat({ max: 80 }),
    indices: fc.uint8Array({ maxLength: 20 }),
  };
  const shapeAt2 = (i: number): number[] => manifest.tensors[i].shape.map((d, ax) => (ax === manifest.tensors[i].loraAxis ? 2 : d));
  const tensor = fc.oneof(
    // referenced by index, shape implied
    fc.nat({ max: 3 }).chain((i) => fc.record({ ...body, name: fc.constant(''), shape: fc.constant([]), tensorSkip: fc.constant(i) })),
    // referenced by name with the right shape
    fc.nat({ max: manifest.tensors.length - 1 }).chain((i) => fc.record({ ...body, name: fc.constant(manifest.tensors[i].name), shape: fc.constant(shapeAt2(i)), tensorSkip: fc.constant(0) })),
    // anything
    fc.record({
      ...body,
      name: fc.oneof(fc.constantFrom(...manifest.tensors.map((s) => s.name)), fc.string({ maxLength: 8 })),
      shape: fc.array(fc.nat({ max: 70 }), { maxLength: 3 }),
      tensorSkip: fc.oneof(fc.constant(0), fc.nat({ max: manifest.tensors.length + 2 }), fc.constant(2 ** 32 - 1)),
    }),
  );
  const update = fc.record({
    formatVersion: fc.constantFrom(0, 1, 2, 2, 2, 2, 3),
    federation: fc.string({ minLength: 1, maxLength: 5 }),
    round: fc.oneof({ arbitrary: fc.bigInt({ min: 0n, max: 100n }), weight: 4 }, { arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), weight: 1 }),
    baseVersion: fc.oneof({ arbitrary: fc.bigInt({ min: 0n, max: 100n }), weight: 4 }, { arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), weight: 1 }),
    sender: fc.string({ minLength: 1, maxLength: 5 }),
    sampleCount: fc.oneof({ arbitrary: fc.bigInt({ min: 1n, max: 100n }), weight: 4 }, { arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), weight: 1 }),
    loraRank: fc.oneof({ arbitrary: fc.constant(2), weight: 4 }, { arbitrary: fc.nat({ max: 4 }), weight: 1 }),
    tensors: fc.array(tensor, { maxLength: 4 }),
    prototypes: fc.array(fc.record({ exit: fc.nat({ max: 3 }), counts: fc.array(fc.bigInt({ min: 0n, max: 10n }), { maxLength: 5 }), sums: fc.option(tensor, { nil: undefined }) }), { maxLength: 2 }),
    manifestDigest: fc.oneof(fc.constant(new Uint8Array(0)), fc.constant(manifestDigest(manifest)), fc.uint8Array({ minLength: 8, maxLength: 8 })),
    tensorCodec: fc.constantFrom(...codecs),
    tensorIndexCodec: fc.constantFrom(...indexCodecs),
  });
  const reasons = new Map<string, number>();
  fc.assert(fc.property(update, fc.boolean(), (u, brotli) => {
    const body = pb.Update.encode(u as pb.Update);
    const wire = brotli
      ? pb.UpdateEnvelope.encode({ compression: pb.PayloadCompression.COMPRESSION_BROTLI, bodyLength: body.length, body: new Uint8Array(zlib.brotliCompressSync(body)) })
      : pb.UpdateEnvelope.encode({ compression: pb.PayloadCompression.COMPRESSION_NONE, bodyLength: body.length, body });
    try {
      decodeUpdate(wire, manifest);
      reasons.set('ok', (reasons.get('ok') ?? 0) + 1);
    } catch (err) {
      if (!(err instanceof UpdateError)) return false;
      reasons.set(err.reason, (reasons.get(err.reason) ?? 0) + 1);
    }
    return true;
  }), { numRuns: 500 });
  // the generator reaches past the header into tensor validation
  t.true(reasons.size >= 8 && reasons.has("ok"), JSON.stringify([...reasons]));
  t.log(JSON.stringify([...reasons]));
});
