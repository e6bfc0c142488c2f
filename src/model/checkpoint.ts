import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { atomicWriteFile } from '../util/atomic.ts';
import { FmflError } from '../util/errors.ts';

/**
 * fmfl checkpoint file, version 1 (all integers little-endian):
 * ```
 * 0       "FMFLCKPT"                      8-byte magic
 * 8       u32 format version (1)
 * 12      u32 H = header length in bytes
 * 16      header: UTF-8 JSON, H bytes     { format, payloadBytes, tensors: [{ name, dtype, shape, offset, length }], metadata }
 * 16+H    zero padding up to P, the next multiple of 64
 * P       payload: float32 tensors, each starting at a 64-byte-aligned `offset` (relative to P)
 * P+L     SHA-256 over bytes [0, P+L)     32 bytes
 * ```
 * Offsets are 64-byte aligned so loading a file into memory yields zero-copy Float32Array views.
 */
export const CHECKPOINT_MAGIC = 'FMFLCKPT';
/** The format version this build writes and reads. */
export const CHECKPOINT_VERSION = 1;
/** Alignment of the payload and of every tensor in it, in bytes. */
export const CHECKPOINT_ALIGN = 64;
/** Default cap on the JSON header size (decoding refuses larger headers before parsing them). */
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024 * 1024;
/** Default cap on a checkpoint file size for {@link loadCheckpoint}. */
export const DEFAULT_MAX_CHECKPOINT_BYTES = 1024 * 1024 * 1024;

const PREFIX_BYTES = 16;
const DIGEST_BYTES = 32;
const FORMAT_TAG = 'fmfl-checkpoint';
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

/** Why a checkpoint was refused. */
export type CheckpointErrorReason =
  /** Fewer bytes than the fixed prefix and digest. */
  | 'too-short'
  /** The first 8 bytes are not "FMFLCKPT". */
  | 'bad-magic'
  /** Written by a format version this build does not read. */
  | 'unsupported-version'
  /** The file is shorter (or longer) than its header says. */
  | 'truncated'
  /** The header is not valid JSON or does not match the schema. */
  | 'bad-header'
  /** The SHA-256 does not match the content. */
  | 'checksum'
  /** A tensor entry is inconsistent (shape vs length, bounds, overlap, duplicate name). */
  | 'bad-tensor'
  /** Arguments to encode/save are invalid (non-Float32Array, non-JSON metadata, ...). */
  | 'invalid-input'
  /** Reading or writing the file failed. */
  | 'io';

/** A checkpoint could not be written, read or validated. `reason` says which check failed. */
export class CheckpointError extends FmflError {
  readonly reason: CheckpointErrorReason;
  constructor(reason: CheckpointErrorReason, message: string, options?: { cause?: unknown }) {
    super('CHECKPOINT', message, options);
    this.reason = reason;
  }
}

/** A JSON value (metadata must be one). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/** A named tensor: its shape and float32 data (row-major, `data.length` = product of `shape`). */
export interface CheckpointTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** What {@link encodeCheckpoint} accepts per name: a tensor, or a bare Float32Array (shape `[length]`). */
export type TensorInput = CheckpointTensor | Float32Array;

/** Named tensors, in insertion order. */
export type TensorSet = ReadonlyMap<string, TensorInput> | Readonly<Record<string, TensorInput>>;

/** A decoded checkpoint. */
export interface Checkpoint {
  readonly version: number;
  readonly metadata: JsonValue;
  /** In file order. Views into the loaded bytes unless `copy` was requested or alignment forbade it. */
  readonly tensors: Map<string, CheckpointTensor>;
}

/** Options of {@link decodeCheckpoint} and {@link loadCheckpoint}. */
export interface DecodeCheckpointOptions {
  /** Verify the SHA-256 (default true). */
  verifyChecksum?: boolean;
  /** Copy tensor data instead of returning views into the input bytes (default false). */
  copy?: boolean;
  /** Refuse headers larger than this (default {@link DEFAULT_MAX_HEADER_BYTES}). */
  maxHeaderBytes?: number;
}

interface HeaderTensor {
  name: string;
  dtype: 'float32';
  shape: number[];
  offset: number;
  length: number;
}

interface Header {
  format: typeof FORMAT_TAG;
  payloadBytes: number;
  tensors: HeaderTensor[];
  metadata: JsonValue;
}

const align = (n: number): number => Math.ceil(n / CHECKPOINT_ALIGN) * CHECKPOINT_ALIGN;

function entriesOf(set: TensorSet): [string, TensorInput][] {
  return set instanceof Map ? [...(set as ReadonlyMap<string, TensorInput>).entries()] : Object.entries(set as Record<string, TensorInput>);
}

function checkJson(v: unknown, path: string): void {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new CheckpointError('invalid-input', `metadata${path} is ${v}: JSON cannot hold non-finite numbers`);
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, i) => checkJson(x, `${path}[${i}]`));
    return;
  }
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    for (const [k, x] of Object.entries(v)) checkJson(x, `${path}.${k}`);
    return;
  }
  const what = ArrayBuffer.isView(v) ? 'a typed array (store arrays as tensors)' : typeof v === 'object' ? 'a non-plain object' : `a ${typeof v}`;
  throw new CheckpointError('invalid-input', `metadata${path || ' '} is ${what}: metadata must be plain JSON`);
}

/**
 * Serialize named float32 tensors and JSON metadata into checkpoint bytes (see {@link CHECKPOINT_MAGIC}
 * for the layout).
 * @throws CheckpointError ('invalid-input') on a non-Float32Array, a shape that does not match the data,
 * an empty or duplicate name, or metadata that is not plain JSON.
 */
export function encodeCheckpoint(tensors: TensorSet, metadata: JsonValue = null): Uint8Array {
  checkJson(metadata, '');
  const list: { name: string; shape: number[]; data: Float32Array }[] = [];
  for (const [name, t] of entriesOf(tensors)) {
    if (typeof name !== 'string' || name.length === 0) throw new CheckpointError('invalid-input', 'tensor names must be non-empty strings');
    const data = t instanceof Float32Array ? t : t?.data;
    if (!(data instanceof Float32Array)) throw new CheckpointError('invalid-input', `tensor '${name}' is not a Float32Array`);
    const shape = t instanceof Float32Array ? [t.length] : [...t.shape];
    if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw new CheckpointError('invalid-input', `tensor '${name}' has an invalid shape [${shape}]`);
    const count = shape.reduce((a, b) => a * b, 1);
    if (count !== data.length) throw new CheckpointError('invalid-input', `tensor '${name}': shape [${shape}] holds ${count} values, data has ${data.length}`);
    list.push({ name, shape, data });
  }
  const headerTensors: HeaderTensor[] = [];
  let payloadBytes = 0;
  for (const t of list) {
    payloadBytes = align(payloadBytes);
    headerTensors.push({ name: t.name, dtype: 'float32', shape: t.shape, offset: payloadBytes, length: t.data.length });
    payloadBytes += t.data.length * 4;
  }
  const header: Header = { format: FORMAT_TAG, payloadBytes, tensors: headerTensors, metadata };
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const p = align(PREFIX_BYTES + headerBytes.length);
  const total = p + payloadBytes + DIGEST_BYTES;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  out.set(Buffer.from(CHECKPOINT_MAGIC, 'latin1'), 0);
  dv.setUint32(8, CHECKPOINT_VERSION, true);
  dv.setUint32(12, headerBytes.length, true);
  out.set(headerBytes, PREFIX_BYTES);
  list.forEach((t, i) => {
    const at = p + headerTensors[i].offset;
    if (LITTLE_ENDIAN_HOST) {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    } else {
      for (let j = 0; j < t.data.length; j++) dv.setFloat32(at + 4 * j, t.data[j], true);
    }
  });
  out.set(createHash('sha256').update(out.subarray(0, total - DIGEST_BYTES)).digest(), total - DIGEST_BYTES);
  return out;
}

function parseHeader(bytes: Uint8Array, h: number): Header {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + PREFIX_BYTES, h).toString('utf8'));
  } catch (err) {
    throw new CheckpointError('bad-header', 'checkpoint header is not valid JSON', { cause: err });
  }
  const bad = (why: string): never => {
    throw new CheckpointError('bad-header', `checkpoint header ${why}`);
  };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) bad('is not an object');
  const o = raw as Record<string, unknown>;
  if (o.format !== FORMAT_TAG) bad(`format is ${JSON.stringify(o.format)}, expected "${FORMAT_TAG}"`);
  if (!Number.isSafeInteger(o.payloadBytes) || (o.payloadBytes as number) < 0) bad('payloadBytes is not a non-negative integer');
  if (!Array.isArray(o.tensors)) bad('has no tensors array');
  if (!('metadata' in o)) bad('has no metadata');
  (o.tensors as unknown[]).forEach((t, i) => {
    if (t === null || typeof t !== 'object') bad(`tensor ${i} is not an object`);
    const e = t as Record<string, unknown>;
    if (typeof e.name !== 'string' || e.name.length === 0) bad(`tensor ${i} has no name`);
    if (e.dtype !== 'float32') bad(`tensor '${String(e.name)}' has dtype ${JSON.stringify(e.dtype)}; only float32 is supported`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(`tensor '${String(e.name)}' has an invalid shape`);
    if (!Number.isSafeInteger(e.offset) || (e.offset as number) < 0) bad(`tensor '${String(e.name)}' has an invalid offset`);
    if (!Number.isSafeInteger(e.length) || (e.length as number) < 0) bad(`tensor '${String(e.name)}' has an invalid length`);
  });
  return o as unknown as Header;
}

/**
 * Parse and validate checkpoint bytes: magic, version, header size and schema, total size, SHA-256,
 * then every tensor (dtype, shape vs length, 4-byte alignment, bounds, no overlap, unique names).
 * Tensor data are zero-copy Float32Array views into `bytes` when aligned (always, for a buffer read from
 * a file) unless `copy` is set. Never throws anything but {@link CheckpointError} on hostile bytes.
 */
export function decodeCheckpoint(bytes: Uint8Array, opts: DecodeCheckpointOptions = {}): Checkpoint {
  const verify = opts.verifyChecksum ?? true;
  const maxHeader = opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  if (!(bytes instanceof Uint8Array)) throw new CheckpointError('invalid-input', 'checkpoint bytes must be a Uint8Array');
  if (bytes.length < PREFIX_BYTES + DIGEST_BYTES) {
    throw new CheckpointError('too-short', `checkpoint is ${bytes.length} bytes, too short to be an fmfl checkpoint (truncated?)`);
  }
  if (Buffer.from(bytes.buffer, bytes.byteOffset, 8).toString('latin1') !== CHECKPOINT_MAGIC) {
    throw new CheckpointError('bad-magic', `not an fmfl checkpoint: the file does not start with "${CHECKPOINT_MAGIC}"`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== CHECKPOINT_VERSION) {
    throw new CheckpointError('unsupported-version', `checkpoint format version ${version} is not supported (this build reads version ${CHECKPOINT_VERSION}); use a matching fmfl release`);
  }
  const h = dv.getUint32(12, true);
  if (h > maxHeader) throw new CheckpointError('bad-header', `checkpoint header is ${h} bytes, over the ${maxHeader}-byte limit`);
  if (PREFIX_BYTES + h + DIGEST_BYTES > bytes.length) {
    throw new CheckpointError('truncated', `checkpoint is truncated: its header alone claims ${h} bytes but the file has ${bytes.length}`);
  }
  const digestOk = (): boolean => {
    const body = bytes.subarray(0, bytes.length - DIGEST_BYTES);
    const want = bytes.subarray(bytes.length - DIGEST_BYTES);
    return Buffer.from(createHash('sha256').update(body).digest()).equals(want);
  };
  let header: Header;
  try {
    header = parseHeader(bytes, h);
  } catch (err) {
    // A corrupted header usually means a corrupted file: say so when the checksum agrees.
    if (verify && !digestOk()) throw new CheckpointError('checksum', 'checkpoint checksum mismatch: the file is corrupt', { cause: err });
    throw err;
  }
  const p = align(PREFIX_BYTES + h);
  const expected = p + header.payloadBytes + DIGEST_BYTES;
  if (bytes.length !== expected) {
    throw new CheckpointError(
      'truncated',
      bytes.length < expected
        ? `checkpoint is truncated: ${bytes.length} bytes, the header describes ${expected}`
        : `checkpoint has ${bytes.length - expected} trailing bytes beyond the ${expected} its header describes`,
    );
  }
  if (verify && !digestOk()) throw new CheckpointError('checksum', 'checkpoint checksum mismatch: the file is corrupt');

  const tensors = new Map<string, CheckpointTensor>();
  let end = 0;
  const ordered = header.tensors.map((t, i) => ({ t, i })).sort((a, b) => a.t.offset - b.t.offset);
  for (const { t } of ordered) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.length) throw new CheckpointError('bad-tensor', `tensor '${t.name}': shape [${t.shape}] holds ${count} values, header says ${t.length}`);
    if (t.offset % 4 !== 0) throw new CheckpointError('bad-tensor', `tensor '${t.name}' offset ${t.offset} is not 4-byte aligned`);
    if (t.offset < end) throw new CheckpointError('bad-tensor', `tensor '${t.name}' overlaps the previous tensor`);
    end = t.offset + t.length * 4;
    if (end > header.payloadBytes) throw new CheckpointError('bad-tensor', `tensor '${t.name}' runs past the payload (${end} > ${header.payloadBytes})`);
  }
  for (const t of header.tensors) {
    if (tensors.has(t.name)) throw new CheckpointError('bad-tensor', `tensor name '${t.name}' appears twice`);
    const at = bytes.byteOffset + p + t.offset;
    let data: Float32Array;
    if (!opts.copy && LITTLE_ENDIAN_HOST && at % 4 === 0) {
      data = new Float32Array(bytes.buffer, at, t.length);
    } else if (LITTLE_ENDIAN_HOST) {
      data = new Float32Array(t.length);
      new Uint8Array(data.buffer).set(bytes.subarray(p + t.offset, p + t.offset + t.length * 4));
    } else {
      data = new Float32Array(t.length);
      for (let j = 0; j < t.length; j++) data[j] = dv.getFloat32(p + t.offset + 4 * j, true);
    }
    tensors.set(t.name, { shape: t.shape, data });
  }
  return { version, metadata: header.metadata, tensors };
}

/**
 * Write a checkpoint atomically (temp file in the same folder, fsync, rename): a crash leaves the old file
 * or the new one, never a torn one, and no temp file survives a failed write.
 * @throws CheckpointError ('invalid-input' or 'io').
 */
export async function saveCheckpoint(path: string, tensors: TensorSet, metadata: JsonValue = null): Promise<void> {
  const bytes = encodeCheckpoint(tensors, metadata);
  try {
    await atomicWriteFile(path, bytes, 0o644);
  } catch (err) {
    throw new CheckpointError('io', `cannot write checkpoint ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Options of {@link loadCheckpoint}. */
export interface LoadCheckpointOptions extends DecodeCheckpointOptions {
  /** Refuse files larger than this (default {@link DEFAULT_MAX_CHECKPOINT_BYTES}). */
  maxBytes?: number;
}

/**
 * Read and validate a checkpoint file (see {@link decodeCheckpoint}). The file is read into one buffer and
 * tensors are zero-copy views into it.
 * @throws CheckpointError with a `reason` for every failure, including a missing file ('io').
 */
export async function loadCheckpoint(path: string, opts: LoadCheckpointOptions = {}): Promise<Checkpoint> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_CHECKPOINT_BYTES;
  let bytes: Buffer;
  try {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      if (size > maxBytes) throw new CheckpointError('invalid-input', `checkpoint ${path} is ${size} bytes, over the ${maxBytes}-byte limit`);
    } finally {
      await fh.close();
    }
    bytes = await readFile(path);
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError('io', `cannot read checkpoint ${path}: ${(err as Error).message}`, { cause: err });
  }
  // A Buffer may live in Node's shared pool at an arbitrary offset; decode copies only when misaligned.
  try {
    return decodeCheckpoint(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), opts);
  } catch (err) {
    if (err instanceof CheckpointError) {
      throw new CheckpointError(err.reason, `${path}: ${err.message}`, { cause: err.cause });
    }
    throw err;
  }
}
