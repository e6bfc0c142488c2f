/**
 * Cast.
 */
import { isFloat, type DType } from '../graph.ts';
import { type OpDef } from './registry.ts';
import { cast } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

ops.push({
  name: 'Cast',
  infer: (ins, attrs) => [{ shape: ins[0].shape, dtype: attrs.to as DType }],
  emit: (e, n) => {
    const codes: Record<string, number> = { float32: 1, uint8: 2, int32: 6, int64: 7, bool: 9, float64: 11 };
    e.node('Cast', [e.name(n.inputs[0])], [e.name(n.outputs[0])], { to: codes[n.attrs.to as string] });
  },
  vjp: (n, [g]) => {
    const x = n.inputs[0];
    if (!isFloat(x.dtype)) return [null];
    return [cast(g!, x.dtype)];
  },
});
