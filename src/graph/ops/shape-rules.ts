/**
 * Shape and dtype rules the ops' infer functions share (pure: no graph nodes).
 */
import { GraphError, isFloat, shapeSize, type Tensor, type DType, type Shape } from '../graph.ts';
import { reshape } from './api.ts';

/** numpy broadcasting of two shapes. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new GraphError(op, `shapes [${a.join(',')}] and [${b.join(',')}] do not broadcast`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new GraphError(op, `axis ${axis} out of range for rank ${rank}`);
  return a;
}

export function sameFloat(op: string, ts: readonly Tensor[]): DType {
  const dt = ts[0].dtype;
  for (const t of ts) {
    if (t.dtype !== dt) throw new GraphError(op, `dtype mismatch: ${ts.map((x) => x.dtype).join(' vs ')}`);
  }
  if (!isFloat(dt)) throw new GraphError(op, `needs float inputs, got ${dt}`);
  return dt;
}

export function resolveReshape(op: string, from: Shape, to: readonly number[]): number[] {
  const out = to.map((d, i) => (d === 0 ? from[i] : d));
  const minus = out.filter((d) => d === -1).length;
  if (minus > 1) throw new GraphError(op, 'at most one -1 in a reshape');
  const known = out.reduce((p, d) => (d === -1 ? p : p * d), 1);
  const total = shapeSize(from);
  if (minus === 1) {
    if (known === 0 || total % known !== 0) throw new GraphError(op, `cannot reshape [${from.join(',')}] to [${to.join(',')}]`);
    out[out.indexOf(-1)] = total / known;
  }
  if (shapeSize(out) !== total) throw new GraphError(op, `cannot reshape [${from.join(',')}] to [${to.join(',')}]`);
  return out;
}
