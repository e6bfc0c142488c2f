/**
 * Unsqueeze and Squeeze (each the other's VJP).
 */
import { GraphError } from '../graph.ts';
import { type OpDef } from './registry.ts';
import { normAxis } from './shape-rules.ts';
import { reshape } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

ops.push({
  name: 'Unsqueeze',
  infer: (ins, attrs) => {
    const x = ins[0];
    const outRank = x.rank + (attrs.axes as number[]).length;
    const axes = (attrs.axes as number[]).map((a) => normAxis('Unsqueeze', a, outRank));
    const shape: number[] = [];
    let j = 0;
    for (let i = 0; i < outRank; i++) shape.push(axes.includes(i) ? 1 : x.shape[j++]);
    return [{ shape, dtype: x.dtype }];
  },
  emit: (e, n) => e.node('Unsqueeze', [e.name(n.inputs[0]), e.i64(n.attrs.axes as number[])], [e.name(n.outputs[0])]),
  vjp: (n, [g]) => [reshape(g!, n.inputs[0].shape)],
});

ops.push({
  name: 'Squeeze',
  infer: (ins, attrs) => {
    const x = ins[0];
    const axes = (attrs.axes as number[]).map((a) => normAxis('Squeeze', a, x.rank));
    for (const a of axes) if (x.shape[a] !== 1) throw new GraphError('Squeeze', `axis ${a} has size ${x.shape[a]}, not 1`);
    return [{ shape: x.shape.filter((_, i) => !axes.includes(i)), dtype: x.dtype }];
  },
  emit: (e, n) => e.node('Squeeze', [e.name(n.inputs[0]), e.i64(n.attrs.axes as number[])], [e.name(n.outputs[0])]),
  vjp: (n, [g]) => [reshape(g!, n.inputs[0].shape)],
});
