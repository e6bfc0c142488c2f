import type { PrototypeTable } from '../update/index.ts';
import { AggregateError, AggregateRefusal } from './types.ts';

/**
 * Aggregate per-exit per-class prototype statistics: sums add and counts add, so the resulting mean per class is
 * the count-weighted mean of the nodes' means, and a node that never saw a class (count 0, zero sum) does not
 * dilute it (FedProto, Tan et al., AAAI 2022, with count weighting). Pure; inputs are the decoded tables of each
 * update (one array per update).
 */
export function aggregatePrototypes(perUpdate: readonly (readonly PrototypeTable[])[]): PrototypeTable[] {
  const byExit = new Map<number, { dim: number; counts: number[]; sums: Float64Array }>();
  for (const tables of perUpdate) {
    for (const t of tables) {
      const classes = t.counts.length;
      if (t.sums.length !== classes * t.dim) throw new AggregateError(AggregateRefusal.SHAPE_MISMATCH, `exit ${t.exit}: sums do not match counts x dim`);
      let acc = byExit.get(t.exit);
      if (acc === undefined) {
        acc = { dim: t.dim, counts: new Array<number>(classes).fill(0), sums: new Float64Array(classes * t.dim) };
        byExit.set(t.exit, acc);
      }
      if (acc.dim !== t.dim || acc.counts.length !== classes) throw new AggregateError(AggregateRefusal.SHAPE_MISMATCH, `exit ${t.exit}: tables disagree on classes or dim`);
      for (let c = 0; c < classes; c++) {
        if (!(t.counts[c] >= 0)) throw new AggregateError(AggregateRefusal.NON_FINITE, `exit ${t.exit}: negative count`);
        acc.counts[c] += t.counts[c];
      }
      for (let k = 0; k < t.sums.length; k++) acc.sums[k] += t.sums[k];
    }
  }
  return [...byExit.entries()].sort((x, y) => x[0] - y[0]).map(([exit, a]) => ({ exit, dim: a.dim, counts: a.counts, sums: Float32Array.from(a.sums) }));
}

/** Per-class mean prototype of a table; `null` for classes with count 0. */
export function prototypeMeans(table: PrototypeTable): (Float32Array | null)[] {
  return table.counts.map((n, c) => {
    if (n === 0) return null;
    const row = new Float32Array(table.dim);
    for (let d = 0; d < table.dim; d++) row[d] = table.sums[c * table.dim + d] / n;
    return row;
  });
}
