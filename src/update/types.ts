import { createHash } from 'node:crypto';

/** A named tensor of the model: row-major `shape`. */
export interface TensorSpec {
  name: string;
  shape: readonly number[];
  /**
   * Axis whose size is the sender's LoRA rank rather than `shape[loraAxis]` (which then gives the manifest's
   * default rank). Lets one manifest validate rank-heterogeneous updates (HetLoRA).
   */
  loraAxis?: number;
}

/** Per-exit prototype geometry the manifest expects (optional: updates without prototypes are valid). */
export interface PrototypeSpec {
  exits: number;
  classes: number;
  dim: number;
}

/** The backbone manifest an update is validated against. */
export interface UpdateManifest {
  tensors: readonly TensorSpec[];
  prototypes?: PrototypeSpec;
}

/** Tensors by name. Values are row-major Float32Arrays of the spec's element count. */
export type TensorMap = Map<string, Float32Array>;

/** One exit's prototype statistics: per class a feature sum (row of `sums`, [classes, dim]) and a sample count. */
export interface PrototypeTable {
  exit: number;
  dim: number;
  /** Per class sample count; 0 means the class was never seen (its sum row must be zero). */
  counts: number[];
  /** Row-major [counts.length, dim] feature sums. */
  sums: Float32Array;
}

/** A node's contribution to one round, in memory. */
export interface ModelUpdate {
  federation: string;
  round: number;
  /** Global model version the deltas were computed against. */
  baseVersion: number;
  /** libp2p peer id string of the sender. */
  sender: string;
  /** Local training samples behind the deltas (FedAvg weight). */
  sampleCount: number;
  /** LoRA rank of the sender's adapters. */
  loraRank: number;
  deltas: TensorMap;
  prototypes: PrototypeTable[];
  /**
   * Depth budgets (`--max-depth`): `deltas` holds exactly the tensors the sender trained and the update says so
   * on the wire (`trained_tensors`); receivers aggregate each tensor over the updates that carry it. Absent or
   * false: `deltas` stands for every manifest tensor (missing ones are zeros).
   */
  partial?: boolean;
}

/** Element count of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * 8-byte digest of a manifest: SHA-256 over its canonical JSON (names, shapes with the rank axis blanked, rank
 * axes, prototype geometry). Two nodes with equal digests agree on tensor order and shapes at any LoRA rank,
 * so updates may reference tensors by index.
 */
export function manifestDigest(manifest: UpdateManifest): Uint8Array {
  const canon = JSON.stringify({
    t: manifest.tensors.map((s) => [s.name, s.shape.map((d, i) => (i === s.loraAxis ? -1 : d)), s.loraAxis ?? null]),
    p: manifest.prototypes ? [manifest.prototypes.exits, manifest.prototypes.classes, manifest.prototypes.dim] : null,
  });
  return new Uint8Array(createHash('sha256').update(canon).digest().subarray(0, 8));
}

/**
 * Build an {@link UpdateManifest} from the model's tensor specs (anything with `name` and `shape`): tensors named
 * `*<a suffix>` get rank axis 1 ([in, r]) and `*<b suffix>` rank axis 0 ([r, out]). Order is kept: it is the
 * wire order and part of the digest.
 */
export function toUpdateManifest(
  specs: readonly { name: string; shape: readonly number[] }[],
  opts: { prototypes?: PrototypeSpec; loraSuffixes?: { a: string; b: string } } = {},
): UpdateManifest {
  const sfx = opts.loraSuffixes ?? { a: '.lora_a', b: '.lora_b' };
  const tensors: TensorSpec[] = specs.map((s) => {
    const t: TensorSpec = { name: s.name, shape: [...s.shape] };
    if (s.shape.length === 2 && s.name.endsWith(sfx.a)) t.loraAxis = 1;
    else if (s.shape.length === 2 && s.name.endsWith(sfx.b)) t.loraAxis = 0;
    return t;
  });
  return opts.prototypes ? { tensors, prototypes: opts.prototypes } : { tensors };
}
