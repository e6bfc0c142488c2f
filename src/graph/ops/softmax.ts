/**
 * Softmax (opset 13 semantics: one axis).
 */
import { emitSame, type OpDef } from './registry.ts';
import { normAxis, sameFloat } from './shape-rules.ts';
import { sub, mul, reduceSum } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

ops.push({
  name: 'Softmax',
  infer: (ins, attrs) => {
    normAxis('Softmax', attrs.axis as number, ins[0].rank);
    return [{ shape: ins[0].shape, dtype: sameFloat('Softmax', ins) }];
  },
  emit: emitSame('Softmax'),
  vjp: (n, [g]) => {
    const y = n.outputs[0];
    const axis = n.attrs.axis as number;
    // dx = y * (g - sum(g * y, axis))
    return [mul(y, sub(g!, reduceSum(mul(g!, y), [axis], true)))];
  },
});
