/**
 * Transpose.
 */
import { GraphError } from '../graph.ts';
import { emitSame, type OpDef } from './registry.ts';
import { transpose } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

ops.push({
  name: 'Transpose',
  infer: (ins, attrs) => {
    const perm = attrs.perm as number[];
    const x = ins[0];
    if (perm.length !== x.rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
      throw new GraphError('Transpose', `perm [${perm.join(',')}] is not a permutation of rank ${x.rank}`);
    }
    return [{ shape: perm.map((p) => x.shape[p]), dtype: x.dtype }];
  },
  emit: emitSame('Transpose'),
  vjp: (n, [g]) => {
    const perm = n.attrs.perm as number[];
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [transpose(g!, inv)];
  },
});
