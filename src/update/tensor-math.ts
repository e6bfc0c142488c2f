import { UpdateError, UpdateRefusal } from './errors.ts';
import { numel, type TensorMap, type UpdateManifest } from './types.ts';
import { resolveShape } from './encode.ts';

/** after − before, per tensor (the model delta a node sends). Tensors must match in names and lengths. */
export function tensorDelta(after: TensorMap, before: TensorMap): TensorMap {
  const out: TensorMap = new Map();
  for (const [name, a] of after) {
    const b = before.get(name);
    if (b === undefined || b.length !== a.length) throw new UpdateError(UpdateRefusal.INVALID_ARGUMENT, `tensorDelta: ${name} missing or of another length in "before"`);
    out.set(name, Float32Array.from(a, (v, i) => v - b[i]));
  }
  return out;
}

/** weights + scale·delta, per tensor, as new arrays; tensors absent from `delta` are copied unchanged. */
export function applyDelta(weights: TensorMap, delta: TensorMap, scale = 1): TensorMap {
  const out: TensorMap = new Map();
  for (const [name, w] of weights) {
    const d = delta.get(name);
    if (d !== undefined && d.length !== w.length) throw new UpdateError(UpdateRefusal.INVALID_ARGUMENT, `applyDelta: ${name} has ${d.length} values, weights ${w.length}`);
    out.set(name, d === undefined ? Float32Array.from(w) : Float32Array.from(w, (v, i) => v + scale * d[i]));
  }
  for (const name of delta.keys()) if (!weights.has(name)) throw new UpdateError(UpdateRefusal.INVALID_ARGUMENT, `applyDelta: ${name} is not in the weights`);
  return out;
}

/** Concatenate the manifest's tensors (at LoRA rank `rank`) into one vector, manifest order; absent = zeros. */
export function flattenTensors(tensors: TensorMap, manifest: UpdateManifest, rank: number): Float32Array {
  const sizes = manifest.tensors.map((s) => numel(resolveShape(s, rank)));
  const out = new Float32Array(sizes.reduce((a, b) => a + b, 0));
  let off = 0;
  manifest.tensors.forEach((s, i) => {
    const t = tensors.get(s.name);
    if (t !== undefined) {
      if (t.length !== sizes[i]) throw new UpdateError(UpdateRefusal.INVALID_ARGUMENT, `flattenTensors: ${s.name} has ${t.length} values, expected ${sizes[i]}`);
      out.set(t, off);
    }
    off += sizes[i];
  });
  return out;
}

/** Inverse of {@link flattenTensors}. */
export function unflattenTensors(vec: ArrayLike<number>, manifest: UpdateManifest, rank: number): TensorMap {
  const out: TensorMap = new Map();
  let off = 0;
  for (const s of manifest.tensors) {
    const n = numel(resolveShape(s, rank));
    if (off + n > vec.length) throw new UpdateError(UpdateRefusal.INVALID_ARGUMENT, 'unflattenTensors: vector too short for the manifest');
    out.set(s.name, Float32Array.from({ length: n }, (_, i) => vec[off + i]));
    off += n;
  }
  if (off !== vec.length) throw new UpdateError(UpdateRefusal.INVALID_ARGUMENT, 'unflattenTensors: vector longer than the manifest');
  return out;
}
