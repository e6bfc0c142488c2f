import { UpdateError, UpdateRefusal } from './errors.ts';
import { encodeUpdate, type EncodedUpdate, type UpdateEncodeOptions } from './encode.ts';
import type { ModelUpdate, TensorMap, UpdateManifest } from './types.ts';

/**
 * Error feedback (error compensation) for lossy update compression: the part of each update that compression
 * dropped is kept locally and added to the next update, so nothing is lost over rounds — Σ sent + residual =
 * Σ deltas (Seide et al., "1-bit SGD", Interspeech 2014; Karimireddy et al., "Error Feedback Fixes SignSGD",
 * ICML 2019; Stich et al., "Sparsified SGD with Memory", NeurIPS 2018). Residuals are kept in float64.
 *
 * Persist `snapshot()` with the node's state each round; a restarted node `ErrorFeedback.restore(...)`s it.
 */
export class ErrorFeedback {
  private readonly residual: Map<string, Float64Array>;

  constructor(residual?: Map<string, Float64Array>) {
    this.residual = new Map();
    if (residual) for (const [k, v] of residual) this.residual.set(k, Float64Array.from(v));
  }

  /** Restore from a {@link snapshot}. */
  static restore(snapshot: Map<string, Float64Array>): ErrorFeedback {
    return new ErrorFeedback(snapshot);
  }

  /** A copy of the residuals (for atomic persistence). */
  snapshot(): Map<string, Float64Array> {
    return new Map([...this.residual].map(([k, v]) => [k, Float64Array.from(v)]));
  }

  /** Residual of one tensor (zeros if none yet). */
  residualOf(name: string, length: number): Float64Array {
    return this.residual.get(name) ?? new Float64Array(length);
  }

  /** Sum of squares of all residuals. */
  residualNormSq(): number {
    let s = 0;
    for (const r of this.residual.values()) for (let i = 0; i < r.length; i++) s += r[i] * r[i];
    return s;
  }

  /** Drop the residual (e.g. when the LoRA rank of this node changes, or after a global reset). */
  reset(): void {
    this.residual.clear();
  }

  /** delta + residual, in float64 (what should be sent). */
  corrected(deltas: TensorMap): Map<string, Float64Array> {
    const out = new Map<string, Float64Array>();
    for (const [name, d] of deltas) {
      const r = this.residual.get(name);
      if (r !== undefined && r.length !== d.length) {
        throw new UpdateError(UpdateRefusal.INVALID_ARGUMENT,
          `error feedback: ${name} has ${d.length} values but its residual ${r.length}; call reset() after a shape change`);
      }
      const c = new Float64Array(d.length);
      for (let i = 0; i < d.length; i++) c[i] = d[i] + (r === undefined ? 0 : r[i]);
      out.set(name, c);
    }
    return out;
  }

  /** Record what was actually transmitted: residual ← corrected − reconstruction. */
  commit(corrected: Map<string, Float64Array>, reconstruction: TensorMap): void {
    for (const [name, c] of corrected) {
      const rec = reconstruction.get(name);
      const r = new Float64Array(c.length);
      for (let i = 0; i < c.length; i++) r[i] = c[i] - (rec === undefined ? 0 : rec[i]);
      this.residual.set(name, r);
    }
  }
}

/**
 * Build the wire form of a node's update with error feedback: adds the stored residual to `update.deltas`,
 * encodes (top-k / quantization / brotli per `opts`), and stores the new residual. The returned
 * `reconstruction` is exactly what receivers decode.
 */
export function encodeWithErrorFeedback(
  update: ModelUpdate, manifest: UpdateManifest, ef: ErrorFeedback, opts: UpdateEncodeOptions = {},
): EncodedUpdate {
  const corrected = ef.corrected(update.deltas);
  const deltas: TensorMap = new Map([...corrected].map(([k, v]) => [k, Float32Array.from(v)]));
  const encoded = encodeUpdate({ ...update, deltas }, manifest, opts);
  ef.commit(corrected, encoded.reconstruction);
  return encoded;
}
