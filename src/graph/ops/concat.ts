/**
 * Concat.
 */
import { GraphError } from '../graph.ts';
import { emitSame, type OpDef } from './registry.ts';
import { normAxis } from './shape-rules.ts';
import { slice } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

ops.push({
  name: 'Concat',
  infer: (ins, attrs) => {
    const axis = normAxis('Concat', attrs.axis as number, ins[0].rank);
    const shape = [...ins[0].shape];
    for (const t of ins.slice(1)) {
      if (t.rank !== ins[0].rank || t.dtype !== ins[0].dtype || t.shape.some((d, i) => i !== axis && d !== shape[i])) {
        throw new GraphError('Concat', `incompatible operand [${t.shape.join(',')}] vs [${ins[0].shape.join(',')}] on axis ${axis}`);
      }
      shape[axis] += t.shape[axis];
    }
    return [{ shape, dtype: ins[0].dtype }];
  },
  emit: emitSame('Concat'),
  vjp: (n, [g], needs) => {
    const axis = normAxis('Concat', n.attrs.axis as number, g!.rank);
    let off = 0;
    return n.inputs.map((t, i) => {
      const start = off;
      off += t.shape[axis];
      return needs[i] ? slice(g!, [start], [off], [axis]) : null;
    });
  },
});
