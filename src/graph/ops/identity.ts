/**
 * Identity and StopGradient (Identity that blocks the gradient).
 */
import { emitSame, type OpDef } from './registry.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

ops.push({
  name: 'Identity',
  infer: (ins) => [{ shape: ins[0].shape, dtype: ins[0].dtype }],
  emit: emitSame('Identity'),
  vjp: (_n, [g]) => [g],
});

/** Identity in the forward pass; blocks the gradient. */
ops.push({
  name: 'StopGradient',
  infer: (ins) => [{ shape: ins[0].shape, dtype: ins[0].dtype }],
  emit: (e, n) => e.node('Identity', [e.name(n.inputs[0])], [e.name(n.outputs[0])]),
  vjp: () => [null],
});
