/**
 * Slice.
 */
import { GraphError } from '../graph.ts';
import { type OpDef } from './registry.ts';
import { normAxis } from './shape-rules.ts';
import { slice, pad } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

ops.push({
  name: 'Slice',
  infer: (ins, attrs) => {
    const x = ins[0];
    const starts = attrs.starts as number[];
    const ends = attrs.ends as number[];
    const axes = (attrs.axes as number[]).map((a) => normAxis('Slice', a, x.rank));
    const shape = [...x.shape];
    axes.forEach((a, i) => {
      const d = x.shape[a];
      const s = clampIdx(starts[i], d);
      const e = clampIdx(ends[i], d);
      if (e < s) throw new GraphError('Slice', `empty slice ${starts[i]}:${ends[i]} on axis ${a}`);
      shape[a] = e - s;
    });
    return [{ shape, dtype: x.dtype }];
  },
  emit: (e, n) => {
    const x = n.inputs[0];
    const axes = (n.attrs.axes as number[]).map((a) => normAxis('Slice', a, x.rank));
    const starts = (n.attrs.starts as number[]).map((s, i) => clampIdx(s, x.shape[axes[i]]));
    const ends = (n.attrs.ends as number[]).map((s, i) => clampIdx(s, x.shape[axes[i]]));
    e.node('Slice', [e.name(x), e.i64(starts), e.i64(ends), e.i64(axes)], [e.name(n.outputs[0])]);
  },
  vjp: (n, [g]) => {
    const x = n.inputs[0];
    const axes = (n.attrs.axes as number[]).map((a) => normAxis('Slice', a, x.rank));
    const before = new Array<number>(x.rank).fill(0);
    const after = new Array<number>(x.rank).fill(0);
    axes.forEach((a, i) => {
      const s = clampIdx((n.attrs.starts as number[])[i], x.shape[a]);
      const e = clampIdx((n.attrs.ends as number[])[i], x.shape[a]);
      before[a] = s;
      after[a] = x.shape[a] - e;
    });
    return [pad(g!, before, after)];
  },
});

function clampIdx(i: number, d: number): number {
  const v = i < 0 ? i + d : i;
  return Math.max(0, Math.min(d, v));
}
