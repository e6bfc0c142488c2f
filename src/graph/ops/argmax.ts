/**
 * ArgMax.
 */
import { type OpDef } from './registry.ts';
import { normAxis } from './shape-rules.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

/** Index of the maximum along an axis (int64, keepdims 0). Not differentiable (integer output). */
ops.push({
  name: 'ArgMax',
  infer: (ins, attrs) => {
    const axis = normAxis('ArgMax', attrs.axis as number, ins[0].rank);
    return [{ shape: ins[0].shape.filter((_, i) => i !== axis), dtype: 'int64' }];
  },
  emit: (e, n) => e.node('ArgMax', [e.name(n.inputs[0])], [e.name(n.outputs[0])], { axis: n.attrs.axis as number, keepdims: 0 }),
});
