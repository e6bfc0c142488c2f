/**
 * Expand.
 */
import { type OpDef } from './registry.ts';
import { broadcastShapes } from './shape-rules.ts';
import { sumToShape } from './grad-helpers.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

ops.push({
  name: 'Expand',
  infer: (ins, attrs) => [{ shape: broadcastShapes('Expand', ins[0].shape, attrs.shape as number[]), dtype: ins[0].dtype }],
  emit: (e, n) => e.node('Expand', [e.name(n.inputs[0]), e.i64(n.attrs.shape as number[])], [e.name(n.outputs[0])]),
  vjp: (n, [g]) => [sumToShape(g!, n.inputs[0].shape)],
});
