import { brotliCompressSync, brotliDecompressSync, constants as zc } from 'node:zlib';
import { Rng } from '../util/rng.ts';
import {
  IndexCodec, defaultBlockSize, ValueCodec, chooseIndexCodec, indexCodec, valueCodec, valueCodecForBits,
  type ValueBits,
} from './codecs.ts';
import { UpdateError, UpdateRefusal, check } from './errors.ts';
import { F16_MAX } from './fp16.ts';
import { DEFAULT_DECODE_LIMITS, UPDATE_FORMAT_VERSION, type DecodeLimits } from './limits.ts';
import * as pb from './pb/update.ts';
import { selectTopK, type TopKOptions } from './topk.ts';
import { manifestDigest, numel, type ModelUpdate, type PrototypeTable, type TensorMap, type TensorSpec, type UpdateManifest } from './types.ts';
import { varintSize } from './varint.ts';

/** How to encode one tensor's values. */
export interface TensorEncodeOptions {
  /** 32 (f32), 16 (f16), 8 / 4 (stochastic block quantization). Default 32. */
  bits?: ValueBits;
  /** Quantization block size (8/4/1 bits). Default: the codec's ({@link defaultBlockSize}). */
  blockSize?: number;
  /** Stochastic rounding for 8/4 bits (default true): unbiased. */
  stochastic?: boolean;
  /** Randomness for stochastic rounding. */
  rng?: Rng;
}

/** Encode one tensor: `indices` (ascending positions) selects a sparse subset, `null` sends it dense. */
export function encodeTensor(
  name: string, shape: readonly number[], values: Float32Array, indices: Uint32Array | null, opts: TensorEncodeOptions = {},
): { msg: pb.TensorDelta; reconstruction: Float32Array } {
  const n = values.length;
  check(numel(shape) === n, UpdateRefusal.INVALID_ARGUMENT, () => `${name}: ${n} values for shape [${shape.join(', ')}]`);
  const sel = indices ?? null;
  const ic = sel === null ? IndexCodec.INDEX_DENSE : chooseIndexCodec(sel, n);
  const picked = sel === null || ic === IndexCodec.INDEX_DENSE ? values : gather(values, sel);
  const vc = valueCodecForBits(opts.bits ?? 32);
  const codec = valueCodec(vc);
  const { bytes, blockSize } = codec.encode(picked, {
    blockSize: opts.blockSize ?? defaultBlockSize(vc), rng: opts.rng, stochastic: opts.stochastic,
  });
  const msg: pb.TensorDelta = {
    tensorSkip: 0,
    name,
    shape: [...shape],
    codec: vc,
    blockSize: blockSize === defaultBlockSize(vc) ? 0 : blockSize,
    values: bytes,
    indexCodec: ic,
    nnz: ic === IndexCodec.INDEX_DENSE ? 0 : picked.length,
    indices: ic === IndexCodec.INDEX_DENSE ? new Uint8Array(0) : indexCodec(ic).encode(sel!, n),
  };
  const decoded = codec.decode(bytes, { count: picked.length, blockSize });
  const reconstruction = ic === IndexCodec.INDEX_DENSE ? decoded : scatter(decoded, sel!, n);
  return { msg, reconstruction };
}

function gather(values: Float32Array, idx: Uint32Array): Float32Array {
  const out = new Float32Array(idx.length);
  for (let i = 0; i < idx.length; i++) out[i] = values[idx[i]];
  return out;
}

function scatter(values: Float32Array, idx: Uint32Array, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < idx.length; i++) out[idx[i]] = values[i];
  return out;
}

const VALUE_CODEC_IDS = new Set<string>(Object.values(pb.ValueCodec).filter((v) => typeof v === 'string'));

/** Update-level defaults a TensorDelta of `Update.tensors` inherits (prototype sums inherit nothing). */
export interface TensorDefaults {
  /** Value codec of tensors whose codec is 0. */
  codec: ValueCodec;
  /** Index codec of sparse tensors whose index_codec is 0. */
  indexCodec: IndexCodec;
}

const NO_DEFAULTS: TensorDefaults = { codec: ValueCodec.VALUE_CODEC_UNSPECIFIED, indexCodec: IndexCodec.INDEX_DENSE };

/**
 * Decode and validate one TensorDelta against the shape the receiver expects. With `shapeImplied` (tensor
 * referenced by manifest position) an empty `shape` stands for the expected one. Codec ids 0 take `defaults`.
 * Throws only {@link UpdateError}.
 */
export function decodeTensor(msg: pb.TensorDelta, expectedShape: readonly number[], shapeImplied = false, defaults: TensorDefaults = NO_DEFAULTS): Float32Array {
  check((shapeImplied && msg.shape.length === 0) || msg.shape.length === expectedShape.length && msg.shape.every((d, i) => d === expectedShape[i]), UpdateRefusal.BAD_SHAPE,
    () => `${msg.name}: shape [${msg.shape.join(', ')}], manifest says [${expectedShape.join(', ')}]`);
  const n = numel(expectedShape);
  const vc = msg.codec === ValueCodec.VALUE_CODEC_UNSPECIFIED ? defaults.codec : msg.codec;
  check(VALUE_CODEC_IDS.has(vc), UpdateRefusal.UNKNOWN_CODEC, `${msg.name}: unknown value codec`);
  const codec = valueCodec(vc);
  const quantized = vc === ValueCodec.VALUE_Q8 || vc === ValueCodec.VALUE_Q4 || vc === ValueCodec.VALUE_SIGN;
  check(quantized || msg.blockSize === 0, UpdateRefusal.BAD_CODEC_PARAMS, () => `${msg.name}: block size set for ${vc}`);
  const blockSize = msg.blockSize === 0 ? defaultBlockSize(vc) : msg.blockSize;
  if (msg.nnz === 0) {
    check(msg.indexCodec === IndexCodec.INDEX_DENSE, UpdateRefusal.BAD_CODEC_PARAMS, () => `${msg.name}: dense tensor (nnz 0) with index codec ${msg.indexCodec}`);
    check(msg.indices.length === 0, UpdateRefusal.BAD_LENGTH, () => `${msg.name}: dense tensor carries index bytes`);
    return codec.decode(msg.values, { count: n, blockSize });
  }
  check(msg.nnz <= n, UpdateRefusal.BAD_CODEC_PARAMS, () => `${msg.name}: nnz ${msg.nnz} > ${n} elements`);
  const ic = msg.indexCodec === IndexCodec.INDEX_DENSE ? defaults.indexCodec : msg.indexCodec;
  const idx = indexCodec(ic).decode(msg.indices, n, msg.nnz);
  const vals = codec.decode(msg.values, { count: msg.nnz, blockSize });
  return scatter(vals, idx, n);
}

/** Shape of `spec` for a sender of LoRA rank `rank`. */
export function resolveShape(spec: TensorSpec, rank: number): number[] {
  const shape = [...spec.shape];
  if (spec.loraAxis !== undefined) shape[spec.loraAxis] = rank;
  return shape;
}

function hasLora(manifest: UpdateManifest): boolean {
  return manifest.tensors.some((s) => s.loraAxis !== undefined);
}

/** Options of {@link encodeUpdate}. */
export interface UpdateEncodeOptions extends Omit<TensorEncodeOptions, 'rng'> {
  /** Top-k sparsification; omitted: dense. */
  topk?: TopKOptions;
  /** Seed of the stochastic-rounding stream (8/4 bits). Required for them unless `rng` is given. */
  seed?: number;
  rng?: Rng;
  /** Prototype sums: 32 (f32, default) or 16 (f16). */
  prototypeBits?: 32 | 16;
  /** Brotli over the whole encoded Update; `true` = quality 5; a number is the quality 0..11. */
  brotli?: boolean | number;
  /**
   * How tensors are referenced: `index` (default) by manifest position plus an 8-byte manifest digest in the
   * header (saves the names: ~1 KB on a vit-tiny update); `name` by full name (self-describing, for debugging).
   */
  tensorRefs?: 'index' | 'name';
}

/** Exact byte accounting of one encoded update: every wire byte is attributed once. */
export interface ByteAccounting {
  /** Bytes on the wire (the UpdateEnvelope). */
  wireBytes: number;
  /** Encoded Update before compression. */
  bodyBytes: number;
  /** Envelope fields around the (possibly compressed) body. */
  envelopeBytes: number;
  /** Update header fields: version, federation, round, base version, sender, samples, rank. */
  headerBytes: number;
  /** Per tensor: field total (tag + length + message), and within it the value and index bytes. */
  tensors: { name: string; totalBytes: number; valueBytes: number; indexBytes: number; nnz: number; numel: number }[];
  /** All prototype tables including their field framing. */
  prototypeBytes: number;
  /** What the same deltas cost as dense f32 values (4 bytes per element), for ratios. */
  denseF32Bytes: number;
}

/** Result of {@link encodeUpdate}. */
export interface EncodedUpdate {
  bytes: Uint8Array;
  accounting: ByteAccounting;
  /** Exactly what a receiver will decode, per tensor (for error feedback). */
  reconstruction: TensorMap;
}

function fieldBytes(len: number): number {
  return 1 + varintSize(len) + len;
}

function validateInMemory(update: ModelUpdate, manifest: UpdateManifest): void {
  const bad = (m: string): never => { throw new UpdateError(UpdateRefusal.INVALID_ARGUMENT, m); };
  if (!Number.isSafeInteger(update.round) || update.round < 0) bad(`round ${update.round} is not a non-negative integer`);
  if (!Number.isSafeInteger(update.baseVersion) || update.baseVersion < 0) bad(`baseVersion ${update.baseVersion} is not a non-negative integer`);
  if (!Number.isSafeInteger(update.sampleCount) || update.sampleCount < 1) bad(`sampleCount ${update.sampleCount} must be a positive integer`);
  if (!Number.isSafeInteger(update.loraRank) || update.loraRank < (hasLora(manifest) ? 1 : 0)) bad(`loraRank ${update.loraRank} invalid`);
  if (update.federation === '' || update.sender === '') bad('federation and sender must be non-empty');
  const names = new Set(manifest.tensors.map((s) => s.name));
  for (const name of update.deltas.keys()) if (!names.has(name)) bad(`tensor ${name} is not in the manifest`);
  if (update.partial) {
    if (update.deltas.size === 0) bad('a partial update must carry at least one tensor');
    const unpaired = loraPartnerMissing(manifest, (n) => update.deltas.has(n));
    if (unpaired !== null) bad(`partial update: ${unpaired}`);
  }
}

/** The partner of a LoRA factor (`.lora_a` <-> `.lora_b`), or null for other tensors. */
function loraPartner(name: string): string | null {
  if (name.endsWith('.lora_a')) return `${name.slice(0, -7)}.lora_b`;
  if (name.endsWith('.lora_b')) return `${name.slice(0, -7)}.lora_a`;
  return null;
}

/** A message naming a LoRA factor in the set whose manifest partner is not, or null when pairs are whole. */
function loraPartnerMissing(manifest: UpdateManifest, has: (name: string) => boolean): string | null {
  const names = new Set(manifest.tensors.map((s) => s.name));
  for (const s of manifest.tensors) {
    if (s.loraAxis === undefined || !has(s.name)) continue;
    const p = loraPartner(s.name);
    if (p !== null && names.has(p) && !has(p)) return `${s.name} without ${p} (a LoRA pair trains whole)`;
  }
  return null;
}

/** Bitmap over manifest positions of the tensors in `has` (protocols/update.proto, `trained_tensors`). */
function trainedMask(manifest: UpdateManifest, has: (name: string) => boolean): Uint8Array {
  const mask = new Uint8Array(Math.ceil(manifest.tensors.length / 8));
  manifest.tensors.forEach((s, i) => { if (has(s.name)) mask[i >> 3] |= 1 << (i & 7); });
  return mask;
}

/** Decode and validate `trained_tensors`: the set of trained tensor names, or null when the field is empty. */
function decodeTrainedMask(mask: Uint8Array, manifest: UpdateManifest): Set<string> | null {
  if (mask.length === 0) return null;
  const n = manifest.tensors.length;
  check(mask.length === Math.ceil(n / 8), UpdateRefusal.BAD_HEADER, () => `trained_tensors has ${mask.length} bytes, the manifest's ${n} tensors need ${Math.ceil(n / 8)}`);
  const set = new Set<string>();
  for (let i = 0; i < mask.length * 8; i++) {
    if ((mask[i >> 3] & (1 << (i & 7))) === 0) continue;
    check(i < n, UpdateRefusal.BAD_HEADER, () => `trained_tensors sets bit ${i}, past the manifest's ${n} tensors`);
    set.add(manifest.tensors[i].name);
  }
  check(set.size > 0, UpdateRefusal.BAD_HEADER, 'trained_tensors names no tensor');
  const unpaired = loraPartnerMissing(manifest, (name) => set.has(name));
  check(unpaired === null, UpdateRefusal.BAD_SHAPE, () => `trained_tensors: ${unpaired}`);
  return set;
}

/**
 * Encode an update: sparsify (top-k), quantize, index-code, frame as protobuf, optionally brotli. Tensors are
 * written in manifest order; a manifest tensor absent from `update.deltas`, or with nothing selected by top-k,
 * is not sent (decodes as zeros). `accounting.tensors` lists the tensors actually sent.
 */
export function encodeUpdate(update: ModelUpdate, manifest: UpdateManifest, opts: UpdateEncodeOptions = {}): EncodedUpdate {
  validateInMemory(update, manifest);
  const bits = opts.bits ?? 32;
  const rng = opts.rng ?? (opts.seed !== undefined ? new Rng(opts.seed) : undefined);
  const specs = manifest.tensors.filter((s) => update.deltas.has(s.name));
  const arrays = specs.map((s) => update.deltas.get(s.name)!);
  specs.forEach((s, i) => {
    const shape = resolveShape(s, update.loraRank);
    check(arrays[i].length === numel(shape), UpdateRefusal.INVALID_ARGUMENT,
      () => `${s.name}: ${arrays[i].length} values, manifest shape at rank ${update.loraRank} is [${shape.join(', ')}]`);
  });
  const selections = opts.topk ? selectTopK(arrays, opts.topk) : arrays.map(() => null);
  const reconstruction: TensorMap = new Map();
  const tensors: pb.TensorDelta[] = [];
  const acct: ByteAccounting['tensors'] = [];
  let denseF32Bytes = 0;
  const byIndex = (opts.tensorRefs ?? 'index') === 'index';
  check(opts.tensorRefs === undefined || opts.tensorRefs === 'index' || opts.tensorRefs === 'name', UpdateRefusal.INVALID_ARGUMENT, 'tensorRefs must be "index" or "name"');
  const position = new Map(manifest.tensors.map((s, i) => [s.name, i]));
  let lastPos = -1;
  specs.forEach((s, i) => {
    const shape = resolveShape(s, update.loraRank);
    denseF32Bytes += 4 * arrays[i].length;
    if (selections[i]?.length === 0) {
      reconstruction.set(s.name, new Float32Array(arrays[i].length));
      return;
    }
    const { msg, reconstruction: rec } = encodeTensor(s.name, shape, arrays[i], selections[i], {
      bits, blockSize: opts.blockSize, stochastic: opts.stochastic, rng,
    });
    if (byIndex) {
      const pos = position.get(s.name)!;
      msg.name = '';
      msg.shape = [];
      msg.tensorSkip = pos - lastPos - 1;
      lastPos = pos;
    }
    tensors.push(msg);
    reconstruction.set(s.name, rec);
    acct.push({ name: s.name, totalBytes: 0, valueBytes: msg.values.length, indexBytes: msg.indices.length, nnz: msg.nnz === 0 ? arrays[i].length : msg.nnz, numel: arrays[i].length });
  });
  // Update-level defaults: the value codec (the same for every tensor) and the most common sparse index codec;
  // tensors that match them leave their codec fields at 0 (not written).
  const tensorCodec = valueCodecForBits(bits);
  const icCount = new Map<IndexCodec, number>();
  for (const t of tensors) if (t.nnz > 0) icCount.set(t.indexCodec, (icCount.get(t.indexCodec) ?? 0) + 1);
  let tensorIndexCodec = IndexCodec.INDEX_DENSE;
  for (const [ic, c] of icCount) if (c > (icCount.get(tensorIndexCodec) ?? 0)) tensorIndexCodec = ic;
  tensors.forEach((t, j) => {
    if (t.codec === tensorCodec) t.codec = ValueCodec.VALUE_CODEC_UNSPECIFIED;
    if (t.nnz > 0 && t.indexCodec === tensorIndexCodec) t.indexCodec = IndexCodec.INDEX_DENSE;
    acct[j].totalBytes = fieldBytes(pb.TensorDelta.encode(t).length);
  });
  const exits = new Set(update.prototypes.map((p) => p.exit));
  check(exits.size === update.prototypes.length, UpdateRefusal.INVALID_ARGUMENT, 'prototype tables repeat an exit');
  const prototypes = update.prototypes.map((p) => encodePrototypes(p, manifest, opts.prototypeBits ?? 32));
  const prototypeBytes = prototypes.reduce((s, p) => s + fieldBytes(pb.PrototypeTable.encode(p).length), 0);
  const body = pb.Update.encode({
    formatVersion: UPDATE_FORMAT_VERSION,
    federation: update.federation,
    round: BigInt(update.round),
    baseVersion: BigInt(update.baseVersion),
    sender: update.sender,
    sampleCount: BigInt(update.sampleCount),
    loraRank: update.loraRank,
    tensors,
    prototypes,
    manifestDigest: byIndex ? manifestDigest(manifest) : new Uint8Array(0),
    tensorCodec,
    tensorIndexCodec,
    trainedTensors: update.partial ? trainedMask(manifest, (n) => update.deltas.has(n)) : new Uint8Array(0),
  });
  const useBrotli = opts.brotli !== undefined && opts.brotli !== false;
  let payload = body;
  if (useBrotli) {
    const quality = typeof opts.brotli === 'number' ? opts.brotli : 5;
    check(Number.isInteger(quality) && quality >= 0 && quality <= 11, UpdateRefusal.INVALID_ARGUMENT, `brotli quality ${quality} outside 0..11`);
    payload = new Uint8Array(brotliCompressSync(body, {
      params: { [zc.BROTLI_PARAM_QUALITY]: quality, [zc.BROTLI_PARAM_SIZE_HINT]: body.length },
    }));
  }
  const bytes = pb.UpdateEnvelope.encode({
    compression: useBrotli ? pb.PayloadCompression.COMPRESSION_BROTLI : pb.PayloadCompression.COMPRESSION_NONE,
    bodyLength: body.length,
    body: payload,
  });
  const tensorBytes = acct.reduce((s, t) => s + t.totalBytes, 0);
  return {
    bytes,
    reconstruction,
    accounting: {
      wireBytes: bytes.length,
      bodyBytes: body.length,
      envelopeBytes: bytes.length - payload.length,
      headerBytes: body.length - tensorBytes - prototypeBytes,
      tensors: acct,
      prototypeBytes,
      denseF32Bytes,
    },
  };
}

function encodePrototypes(p: PrototypeTable, manifest: UpdateManifest, bits: 32 | 16): pb.PrototypeTable {
  const spec = manifest.prototypes;
  const bad = (m: string): never => { throw new UpdateError(UpdateRefusal.INVALID_ARGUMENT, `prototypes of exit ${p.exit}: ${m}`); };
  if (spec === undefined) bad('the manifest declares no prototypes');
  if (!Number.isInteger(p.exit) || p.exit < 0 || p.exit >= spec!.exits) bad(`exit outside [0, ${spec!.exits})`);
  if (p.dim !== spec!.dim || p.counts.length !== spec!.classes || p.sums.length !== spec!.classes * spec!.dim) bad('shape differs from the manifest');
  for (const c of p.counts) if (!Number.isSafeInteger(c) || c < 0) bad(`count ${c} is not a non-negative integer`);
  if (bits === 16 && p.sums.some((v) => Math.abs(v) > F16_MAX)) bad(`a sum exceeds the f16 range (±${F16_MAX}); use prototypeBits 32`);
  for (let c = 0; c < p.counts.length; c++) {
    if (p.counts[c] !== 0) continue;
    for (let d = 0; d < p.dim; d++) if (p.sums[c * p.dim + d] !== 0) bad(`class ${c} has a sum but count 0`);
  }
  const { msg } = encodeTensor(`prototypes.${p.exit}`, [spec!.classes, spec!.dim], p.sums, null, { bits });
  msg.name = ''; // the exit identifies the table; the shape stays explicit
  return { exit: p.exit, counts: p.counts.map((c) => BigInt(c)), sums: msg };
}

function toSafeNumber(v: bigint, max: number, what: string): number {
  check(v <= BigInt(max), UpdateRefusal.BAD_HEADER, () => `${what} ${v} exceeds ${max}`);
  return Number(v);
}

/**
 * Decode and fully validate an update from a peer against the local manifest. Every failure is an
 * {@link UpdateError} with a {@link UpdateRefusal} reason; nothing else escapes. Manifest tensors the sender did
 * not transmit decode as zeros, so `deltas` always holds every manifest tensor at the sender's rank, unless the
 * update names the tensors its sender trained (`trained_tensors`, depth budgets): then `deltas` holds exactly
 * those and `partial` is set.
 */
export function decodeUpdate(bytes: Uint8Array, manifest: UpdateManifest, limits: Partial<DecodeLimits> = {}): ModelUpdate {
  const lim: DecodeLimits = { ...DEFAULT_DECODE_LIMITS, ...limits };
  try {
    return decodeUnsafe(bytes, manifest, lim);
  } catch (err) {
    if (err instanceof UpdateError) throw err;
    throw new UpdateError(UpdateRefusal.MALFORMED, `undecodable update: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}

function decodeUnsafe(bytes: Uint8Array, manifest: UpdateManifest, lim: DecodeLimits): ModelUpdate {
  check(bytes.length <= lim.maxMessageBytes, UpdateRefusal.TOO_LARGE, () => `${bytes.length} bytes > ${lim.maxMessageBytes}`);
  let env: pb.UpdateEnvelope;
  try {
    env = pb.UpdateEnvelope.decode(bytes);
  } catch (err) {
    throw new UpdateError(UpdateRefusal.MALFORMED, `envelope: ${(err as Error).message}`, { cause: err });
  }
  check(env.bodyLength <= lim.maxBodyBytes, UpdateRefusal.TOO_LARGE, () => `body_length ${env.bodyLength} > ${lim.maxBodyBytes}`);
  let body: Uint8Array;
  if (env.compression === pb.PayloadCompression.COMPRESSION_NONE) {
    body = env.body;
  } else if (env.compression === pb.PayloadCompression.COMPRESSION_BROTLI) {
    try {
      body = new Uint8Array(brotliDecompressSync(env.body, { maxOutputLength: Math.max(1, env.bodyLength) }));
    } catch (err) {
      throw new UpdateError(UpdateRefusal.BAD_COMPRESSION, `brotli body does not inflate within ${env.bodyLength} bytes`, { cause: err });
    }
  } else {
    throw new UpdateError(UpdateRefusal.BAD_COMPRESSION, `unknown compression ${String(env.compression)}`);
  }
  check(body.length === env.bodyLength, UpdateRefusal.BAD_COMPRESSION, () => `body is ${body.length} bytes, body_length says ${env.bodyLength}`);
  let msg: pb.Update;
  try {
    msg = pb.Update.decode(body, {
      limits: { tensors: lim.maxTensors, prototypes: lim.maxPrototypeTables, tensors$: { shape: lim.maxDims }, prototypes$: { counts: lim.maxClasses, sums: { shape: lim.maxDims } } },
    });
  } catch (err) {
    throw new UpdateError(UpdateRefusal.MALFORMED, `update: ${(err as Error).message}`, { cause: err });
  }
  check(msg.formatVersion === UPDATE_FORMAT_VERSION, UpdateRefusal.UNSUPPORTED_VERSION,
    () => `format_version ${msg.formatVersion}; this build reads ${UPDATE_FORMAT_VERSION}`);
  check(msg.federation.length > 0 && msg.federation.length <= lim.maxIdLength, UpdateRefusal.BAD_HEADER, 'federation empty or too long');
  check(msg.sender.length > 0 && msg.sender.length <= lim.maxIdLength, UpdateRefusal.BAD_HEADER, 'sender empty or too long');
  const round = toSafeNumber(msg.round, lim.maxRound, 'round');
  const baseVersion = toSafeNumber(msg.baseVersion, lim.maxRound, 'base_version');
  const sampleCount = toSafeNumber(msg.sampleCount, lim.maxSampleCount, 'sample_count');
  check(sampleCount >= 1, UpdateRefusal.BAD_HEADER, 'sample_count is 0');
  const lora = hasLora(manifest);
  check(msg.loraRank <= lim.maxLoraRank && (!lora || msg.loraRank >= 1), UpdateRefusal.BAD_HEADER,
    () => `lora_rank ${msg.loraRank} outside [${lora ? 1 : 0}, ${lim.maxLoraRank}]`);

  const shapes = new Map<string, number[]>();
  let total = 0;
  for (const s of manifest.tensors) {
    const shape = resolveShape(s, msg.loraRank);
    const n = numel(shape);
    check(n <= lim.maxTensorElements, UpdateRefusal.LIMIT_EXCEEDED, () => `${s.name} would hold ${n} elements`);
    total += n;
    shapes.set(s.name, shape);
  }
  check(total <= lim.maxTotalElements, UpdateRefusal.LIMIT_EXCEEDED, () => `update would hold ${total} elements`);
  if (msg.manifestDigest.length > 0) {
    const ours = manifestDigest(manifest);
    check(msg.manifestDigest.length === ours.length && msg.manifestDigest.every((b, i) => b === ours[i]), UpdateRefusal.MANIFEST_MISMATCH,
      'the sender\'s manifest differs from ours (different backbone or exit heads)');
  }
  const trained = decodeTrainedMask(msg.trainedTensors, manifest);
  const deltas: TensorMap = new Map();
  const defaults: TensorDefaults = { codec: msg.tensorCodec, indexCodec: msg.tensorIndexCodec };
  let lastPos = -1;
  for (const t of msg.tensors) {
    const byPosition = t.name === '';
    if (byPosition) {
      check(msg.manifestDigest.length > 0, UpdateRefusal.MANIFEST_MISMATCH, 'tensor referenced by position without a manifest digest');
      const pos = lastPos + 1 + t.tensorSkip;
      check(pos < manifest.tensors.length, UpdateRefusal.BAD_SHAPE, () => `tensor position ${pos} outside the manifest`);
      lastPos = pos;
      t.name = manifest.tensors[pos].name;
    } else {
      check(t.tensorSkip === 0, UpdateRefusal.MALFORMED, 'tensor has both a name and a tensor_skip');
    }
    check(t.name.length <= lim.maxNameLength, UpdateRefusal.LIMIT_EXCEEDED, 'tensor name too long');
    const shape = shapes.get(t.name);
    check(shape !== undefined, UpdateRefusal.BAD_SHAPE, () => `tensor ${JSON.stringify(t.name)} is not in the manifest`);
    check(!deltas.has(t.name), UpdateRefusal.BAD_SHAPE, () => `tensor ${t.name} appears twice`);
    check(trained === null || trained.has(t.name), UpdateRefusal.BAD_SHAPE, () => `tensor ${t.name} is outside the sender's trained_tensors`);
    deltas.set(t.name, decodeTensor(t, shape, byPosition, defaults));
  }
  for (const [name, shape] of shapes) if (!deltas.has(name) && (trained === null || trained.has(name))) deltas.set(name, new Float32Array(numel(shape)));

  const prototypes: PrototypeTable[] = [];
  if (msg.prototypes.length > 0) {
    const ps = manifest.prototypes;
    check(ps !== undefined, UpdateRefusal.BAD_PROTOTYPES, 'prototypes sent but the manifest declares none');
    check(ps.classes * ps.dim * msg.prototypes.length + total <= lim.maxTotalElements, UpdateRefusal.LIMIT_EXCEEDED, 'prototype tables too large');
    const seen = new Set<number>();
    for (const p of msg.prototypes) {
      check(p.exit < ps.exits && !seen.has(p.exit), UpdateRefusal.BAD_PROTOTYPES, () => `exit ${p.exit} out of range or repeated`);
      seen.add(p.exit);
      check(p.counts.length === ps.classes, UpdateRefusal.BAD_PROTOTYPES, () => `exit ${p.exit}: ${p.counts.length} counts, ${ps.classes} classes`);
      check(p.sums !== undefined, UpdateRefusal.BAD_PROTOTYPES, () => `exit ${p.exit}: no sums`);
      check(p.sums.name === '' && p.sums.tensorSkip === 0, UpdateRefusal.BAD_PROTOTYPES, () => `exit ${p.exit}: sums carry a tensor reference`);
      const counts = p.counts.map((c) => toSafeNumber(c, lim.maxSampleCount, 'prototype count'));
      let sums: Float32Array;
      try {
        sums = decodeTensor(p.sums, [ps.classes, ps.dim]);
      } catch (err) {
        if (err instanceof UpdateError && err.reason === UpdateRefusal.BAD_SHAPE) {
          throw new UpdateError(UpdateRefusal.BAD_PROTOTYPES, `exit ${p.exit}: ${err.message}`);
        }
        throw err;
      }
      for (let c = 0; c < ps.classes; c++) {
        if (counts[c] !== 0) continue;
        for (let d = 0; d < ps.dim; d++) {
          check(sums[c * ps.dim + d] === 0, UpdateRefusal.BAD_PROTOTYPES, () => `exit ${p.exit}: class ${c} has a sum but count 0`);
        }
      }
      prototypes.push({ exit: p.exit, dim: ps.dim, counts, sums });
    }
  }
  const out: ModelUpdate = {
    federation: msg.federation, round, baseVersion, sender: msg.sender, sampleCount, loraRank: msg.loraRank, deltas, prototypes,
  };
  if (trained !== null) out.partial = true;
  return out;
}
