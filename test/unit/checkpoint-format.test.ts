import test from 'ava';
import fc from 'fast-check';
import { mkdtemp, readFile, writeFile, readdir, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import {
  encodeCheckpoint,
  decodeCheckpoint,
  saveCheckpoint,
  loadCheckpoint,
  CheckpointError,
  CHECKPOINT_ALIGN,
  type CheckpointErrorReason,
} from '../../src/model/checkpoint.ts';
import { AdamW, splitOptimizerState, joinOptimizerState } from '../../src/train/optim.ts';
import { Rng } from '../../src/util/rng.ts';

const dirs: string[] = [];
async function freshDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'fmfl-ckpt-'));
  dirs.push(d);
  return d;
}
test.after.always(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function randomTensor(r: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => r.normal());
}

function sample(): { tensors: Map<string, { shape: number[]; data: Float32Array } | Float32Array>; meta: { model: { dim: number; depth: number; name: string }; round: number; tags: string[]; lr: number; nested: { ok: boolean; none: null } } } {
  const r = new Rng(11);
  const tensors = new Map<string, { shape: number[]; data: Float32Array } | Float32Array>([
    ['embed.weight', { shape: [16, 7], data: randomTensor(r, 112) }],
    ['blocks.0.attn.qkv.lora_a', { shape: [3, 5], data: randomTensor(r, 15) }],
    ['bias', randomTensor(r, 3)],
    ['scalar', { shape: [], data: Float32Array.of(Math.PI) }],
    ['empty', { shape: [0, 4], data: new Float32Array(0) }],
    ['special', Float32Array.of(Infinity, -0, NaN, 1e-45)],
  ]);
  return { tensors, meta: { model: { dim: 16, depth: 2, name: 'vit-tiny' }, round: 42, tags: ['a', 'ü'], lr: 1e-3, nested: { ok: true, none: null } } };
}

function expectReason(t: { throws: Function; is: Function }, fn: () => unknown, reason: CheckpointErrorReason, msg?: RegExp): void {
  const err = (t.throws as (f: () => unknown, o: object) => CheckpointError)(fn, { instanceOf: CheckpointError, ...(msg ? { message: msg } : {}) });
  t.is(err?.reason, reason);
}

test('round trip: names, order, shapes, bit-exact values (NaN, -0, denormals) and metadata', async (t) => {
  const { tensors, meta } = sample();
  const dir = await freshDir();
  const path = join(dir, 'model.fmfl');
  await saveCheckpoint(path, tensors, meta);
  const ck = await loadCheckpoint(path);
  t.is(ck.version, 1);
  t.deepEqual(ck.metadata, meta);
  t.deepEqual([...ck.tensors.keys()], [...tensors.keys()]);
  for (const [name, src] of tensors) {
    const got = ck.tensors.get(name)!;
    const data = src instanceof Float32Array ? src : src.data;
    t.deepEqual(got.shape, src instanceof Float32Array ? [src.length] : src.shape);
    t.true(Buffer.from(got.data.buffer, got.data.byteOffset, got.data.byteLength).equals(Buffer.from(data.buffer, data.byteOffset, data.byteLength)), name);
  }
  t.deepEqual(await readdir(dir), ['model.fmfl'], 'no temp file left behind');
  // Overwrite in place: the file is replaced whole.
  await saveCheckpoint(path, { only: Float32Array.of(7) }, { round: 43 });
  const again = await loadCheckpoint(path);
  t.deepEqual([...again.tensors.keys()], ['only']);
  t.deepEqual(again.metadata, { round: 43 });
  t.deepEqual(await readdir(dir), ['model.fmfl']);
});

test('tensors are zero-copy views into the loaded bytes, 64-byte aligned; copy: true detaches them', (t) => {
  const { tensors, meta } = sample();
  const bytes = encodeCheckpoint(tensors, meta);
  const ck = decodeCheckpoint(bytes);
  for (const { data } of ck.tensors.values()) {
    t.is(data.buffer, bytes.buffer);
    t.is(data.byteOffset % CHECKPOINT_ALIGN, 0);
  }
  const copied = decodeCheckpoint(bytes, { copy: true });
  const w = copied.tensors.get('bias')!.data;
  t.not(w.buffer, bytes.buffer);
  t.deepEqual(w, ck.tensors.get('bias')!.data);
  // A misaligned input still decodes (by copying).
  const shifted = new Uint8Array(bytes.length + 1);
  shifted.set(bytes, 1);
  const ck2 = decodeCheckpoint(shifted.subarray(1));
  t.deepEqual(ck2.tensors.get('embed.weight')!.data, ck.tensors.get('embed.weight')!.data);
});

test('corruption is detected with a typed reason: flipped byte anywhere, truncation, magic, version, trailing bytes', async (t) => {
  const { tensors, meta } = sample();
  const good = encodeCheckpoint(tensors, meta);
  // A flipped bit in the header, payload or digest is a checksum failure.
  for (const at of [20, 200, good.length - 100, good.length - 1]) {
    const b = good.slice();
    b[at] ^= 0x10;
    expectReason(t, () => decodeCheckpoint(b), 'checksum', /corrupt/);
  }
  expectReason(t, () => decodeCheckpoint(good.subarray(0, good.length - 5)), 'truncated', /truncated/);
  expectReason(t, () => decodeCheckpoint(good.subarray(0, 40)), 'too-short');
  expectReason(t, () => decodeCheckpoint(good.subarray(0, 100)), 'truncated');
  const longer = new Uint8Array(good.length + 8);
  longer.set(good);
  expectReason(t, () => decodeCheckpoint(longer), 'truncated', /trailing/);
  const magic = good.slice();
  magic.set(Buffer.from('PK\u0003\u0004'), 0);
  expectReason(t, () => decodeCheckpoint(magic), 'bad-magic', /FMFLCKPT/);
  const version = good.slice();
  version[8] = 2;
  expectReason(t, () => decodeCheckpoint(version), 'unsupported-version', /version 2/);
  const huge = good.slice();
  new DataView(huge.buffer).setUint32(12, 0xffffff00, true);
  expectReason(t, () => decodeCheckpoint(huge), 'bad-header', /limit/);

  const dir = await freshDir();
  const path = join(dir, 'c.fmfl');
  await writeFile(path, good);
  await truncate(path, good.length - 64);
  const e = await t.throwsAsync(loadCheckpoint(path), { instanceOf: CheckpointError, message: /c\.fmfl.*truncated/ });
  t.is(e.reason, 'truncated');
  const missing = await t.throwsAsync(loadCheckpoint(join(dir, 'nope.fmfl')), { instanceOf: CheckpointError });
  t.is(missing.reason, 'io');
  const capped = await t.throwsAsync(loadCheckpoint(path, { maxBytes: 100 }), { instanceOf: CheckpointError, message: /limit/ });
  t.is(capped.reason, 'invalid-input');
});

test('a validly checksummed file with an inconsistent header is refused (bad-tensor / bad-header)', (t) => {
  const forge = (header: unknown, payload = 64): Uint8Array => {
    const hb = Buffer.from(JSON.stringify(header));
    const p = Math.ceil((16 + hb.length) / 64) * 64;
    const out = new Uint8Array(p + payload + 32);
    out.set(Buffer.from('FMFLCKPT'), 0);
    new DataView(out.buffer).setUint32(8, 1, true);
    new DataView(out.buffer).setUint32(12, hb.length, true);
    out.set(hb, 16);
    out.set(createHash('sha256').update(out.subarray(0, out.length - 32)).digest(), out.length - 32);
    return out;
  };
  const base = { format: 'fmfl-checkpoint', payloadBytes: 64, metadata: null };
  const ten = (o: object) => ({ name: 'w', dtype: 'float32', shape: [4], offset: 0, length: 4, ...o });
  t.notThrows(() => decodeCheckpoint(forge({ ...base, tensors: [ten({})] })));
  expectReason(t, () => decodeCheckpoint(forge({ ...base, tensors: [ten({ shape: [2, 3] })] })), 'bad-tensor', /shape/);
  expectReason(t, () => decodeCheckpoint(forge({ ...base, tensors: [ten({ offset: 2 })] })), 'bad-tensor', /aligned/);
  expectReason(t, () => decodeCheckpoint(forge({ ...base, tensors: [ten({ offset: 60 })] })), 'bad-tensor', /past/);
  expectReason(t, () => decodeCheckpoint(forge({ ...base, tensors: [ten({}), ten({ name: 'v', offset: 8 })] })), 'bad-tensor', /overlaps/);
  expectReason(t, () => decodeCheckpoint(forge({ ...base, tensors: [ten({}), ten({ offset: 16 })] })), 'bad-tensor', /twice/);
  expectReason(t, () => decodeCheckpoint(forge({ ...base, tensors: [ten({ dtype: 'float16' })] })), 'bad-header', /float16/);
  expectReason(t, () => decodeCheckpoint(forge({ ...base, format: 'other', tensors: [] })), 'bad-header', /format/);
  expectReason(t, () => decodeCheckpoint(forge([1, 2])), 'bad-header');
});

test('encode rejects invalid input with invalid-input', (t) => {
  expectReason(t, () => encodeCheckpoint({ w: { shape: [2, 2], data: new Float32Array(3) } }), 'invalid-input', /shape/);
  expectReason(t, () => encodeCheckpoint({ w: new Float64Array(2) as never }), 'invalid-input', /Float32Array/);
  expectReason(t, () => encodeCheckpoint({ '': new Float32Array(2) }), 'invalid-input');
  expectReason(t, () => encodeCheckpoint({}, { x: NaN }), 'invalid-input', /metadata\.x/);
  expectReason(t, () => encodeCheckpoint({}, { x: new Float32Array(2) } as never), 'invalid-input', /typed array/);
  expectReason(t, () => encodeCheckpoint({}, { when: new Date() } as never), 'invalid-input');
});

test('decoder property: random bytes and random mutations only ever throw CheckpointError', (t) => {
  const good = encodeCheckpoint(sample().tensors, sample().meta);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      try {
        decodeCheckpoint(bytes);
        return false;
      } catch (err) {
        return err instanceof CheckpointError;
      }
    }),
    { numRuns: 300, seed: 1 },
  );
  // Mutations of a valid file, checksum verification off, so the structural checks are exercised.
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat({ max: good.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (edits) => {
      const b = good.slice();
      for (const [at, v] of edits) b[at] = v;
      try {
        decodeCheckpoint(b, { verifyChecksum: false });
        return true;
      } catch (err) {
        return err instanceof CheckpointError;
      }
    }),
    { numRuns: 300, seed: 2 },
  );
  t.pass();
});

test('an AdamW state survives a checkpoint and resumes identically', async (t) => {
  const w = Float32Array.of(1, 2, 3);
  const opt = new AdamW({ w }, { lr: 0.1 });
  opt.step({ w: Float32Array.of(0.5, -1, 2) });
  const { meta, tensors } = splitOptimizerState(opt.state());
  const path = join(await freshDir(), 'state.fmfl');
  await saveCheckpoint(path, new Map([['param/w', w], ...tensors]), { optimizer: meta as never, round: 1 });
  const ck = await loadCheckpoint(path, { copy: true });
  const w2 = ck.tensors.get('param/w')!.data;
  const opt2 = new AdamW({ w: w2 });
  opt2.loadState(joinOptimizerState((ck.metadata as { optimizer: never }).optimizer, ck.tensors));
  const g = Float32Array.of(-0.3, 0.2, 0.1);
  opt.step({ w: g });
  opt2.step({ w: g });
  t.deepEqual(w2, w);
  t.is(opt2.stepCount, 2);
});
