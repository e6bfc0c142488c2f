/**
 * Reshape.
 */
import { type OpDef } from './registry.ts';
import { resolveReshape } from './shape-rules.ts';
import { reshape } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

ops.push({
  name: 'Reshape',
  infer: (ins, attrs) => [{ shape: resolveReshape('Reshape', ins[0].shape, attrs.shape as number[]), dtype: ins[0].dtype }],
  emit: (e, n) => e.node('Reshape', [e.name(n.inputs[0]), e.i64(n.outputs[0].shape)], [e.name(n.outputs[0])]),
  vjp: (n, [g]) => [reshape(g!, n.inputs[0].shape)],
});
