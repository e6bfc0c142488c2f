/**
 * The federated model state every node holds: the global version, the trainable tensors (LoRA + exit heads)
 * and the global prototype statistics, with a canonical SHA-256 so nodes can check they hold the same state.
 */
import { createHash } from 'node:crypto';
import { aggregatePrototypes, prototypeMeans } from '../aggregate/index.ts';
import { decodeUpdate, encodeUpdate, type ModelUpdate, type PrototypeTable, type TensorMap, type UpdateManifest } from '../update/index.ts';
import { FmflError } from '../util/errors.ts';

/** The global model at one version. */
export interface GlobalState {
  /** Number of rounds applied (0 = the initial model every member derives from the federation seed). */
  version: number;
  /** Trainable tensors, in manifest order. */
  tensors: TensorMap;
  /** Global per-exit, per-class prototype statistics (empty before the first round). */
  prototypes: PrototypeTable[];
  /** SHA-256 of the above (see hashState). */
  hash: Uint8Array;
}

export class StateError extends FmflError {
  constructor(message: string) {
    super('STATE', message);
  }
}

/** Canonical SHA-256 of a state: version, then every tensor's name and bytes in manifest order, then prototypes. */
export function hashState(version: number, tensors: TensorMap, prototypes: readonly PrototypeTable[], manifest: UpdateManifest): Uint8Array {
  const h = createHash('sha256');
  h.update(`fmfl-state/1:${version}`);
  for (const spec of manifest.tensors) {
    const t = tensors.get(spec.name);
    if (!t) throw new StateError(`state is missing tensor ${spec.name}`);
    h.update(spec.name);
    h.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
  }
  for (const p of prototypes) {
    h.update(`proto:${p.exit}:${p.dim}:${p.counts.join(',')}`);
    h.update(new Uint8Array(p.sums.buffer, p.sums.byteOffset, p.sums.byteLength));
  }
  return new Uint8Array(h.digest());
}

export function makeState(version: number, tensors: TensorMap, prototypes: PrototypeTable[], manifest: UpdateManifest): GlobalState {
  return { version, tensors, prototypes, hash: hashState(version, tensors, prototypes, manifest) };
}

/**
 * Apply an aggregated delta: W_{v+1} = W_v + delta (float32 arithmetic, identical on every node), with the
 * aggregate's prototypes as the new global prototypes.
 */
export function applyDelta(state: GlobalState, delta: TensorMap, prototypes: PrototypeTable[], manifest: UpdateManifest): GlobalState {
  const tensors: TensorMap = new Map();
  for (const spec of manifest.tensors) {
    const w = state.tensors.get(spec.name)!;
    const d = delta.get(spec.name);
    const out = Float32Array.from(w);
    if (d) {
      if (d.length !== out.length) throw new StateError(`delta for ${spec.name} has ${d.length} values, expected ${out.length}`);
      for (let i = 0; i < out.length; i++) out[i] += d[i];
    }
    tensors.set(spec.name, out);
  }
  return makeState(state.version + 1, tensors, prototypes, manifest);
}

/** W_local - W_global per tensor. */
export function deltaOf(local: TensorMap, global: TensorMap): TensorMap {
  const out: TensorMap = new Map();
  for (const [k, g] of global) {
    const l = local.get(k);
    if (!l) throw new StateError(`local model is missing ${k}`);
    const d = new Float32Array(g.length);
    for (let i = 0; i < d.length; i++) d[i] = l[i] - g[i];
    out.set(k, d);
  }
  return out;
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

export function sameHash(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Serialize a full state as an fmfl Update with absolute values (dense f32), for the state-sync stream. */
export function encodeState(state: GlobalState, manifest: UpdateManifest, federation: string, sender: string, loraRank: number, sampleCount = 1): Uint8Array {
  const u: ModelUpdate = {
    federation, round: state.version, baseVersion: state.version, sender, sampleCount, loraRank,
    deltas: state.tensors, prototypes: state.prototypes,
  };
  return encodeUpdate(u, manifest, { bits: 32, prototypeBits: 32 }).bytes;
}

/** Inverse of encodeState, fully validated; checks the hash. */
export function decodeState(bytes: Uint8Array, manifest: UpdateManifest, expectHash: Uint8Array, federation: string): GlobalState {
  const u = decodeUpdate(bytes, manifest);
  if (u.federation !== federation) throw new StateError(`state belongs to federation ${u.federation}`);
  for (const spec of manifest.tensors) if (!u.deltas.has(spec.name)) throw new StateError(`state is missing tensor ${spec.name}`);
  const st = makeState(u.round, u.deltas, u.prototypes, manifest);
  if (!sameHash(st.hash, expectHash)) throw new StateError('state does not match its announced hash');
  return st;
}

/**
 * Global prototypes as a dense [exits, classes, dim] tensor of class means plus a [exits, classes] mask (1 where
 * the class has been seen), the form the training graph's prototype term takes.
 */
export function prototypeTensors(prototypes: readonly PrototypeTable[], exits: number, classes: number, dim: number): { protos: Float32Array; mask: Float32Array } {
  const protos = new Float32Array(exits * classes * dim);
  const mask = new Float32Array(exits * classes);
  for (const t of prototypes) {
    if (t.exit < 0 || t.exit >= exits || t.dim !== dim) continue;
    const means = prototypeMeans(t);
    means.forEach((m, c) => {
      if (!m || c >= classes) return;
      protos.set(m, (t.exit * classes + c) * dim);
      mask[t.exit * classes + c] = 1;
    });
  }
  return { protos, mask };
}

/** Merge prototype statistics from several sources (count-weighted; unseen classes do not dilute). */
export function mergePrototypes(tables: readonly (readonly PrototypeTable[])[]): PrototypeTable[] {
  const nonEmpty = tables.filter((t) => t.length > 0);
  return nonEmpty.length ? aggregatePrototypes(nonEmpty) : [];
}
