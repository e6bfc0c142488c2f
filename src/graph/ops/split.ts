/**
 * Split (opset 13+ semantics: sizes as an input; here an attribute `split`, emitted as a constant input) along one
 * axis into consecutive parts. timm's `qkv.unbind(0)` and `torch.split`/`chunk` export as Split.
 * VJP: the Concat of the parts' gradients along the same axis, a zero block for each part nothing differentiates.
 */
import { GraphError } from '../graph.ts';
import { type OpDef } from './registry.ts';
import { normAxis } from './shape-rules.ts';
import { zerosLike } from './grad-helpers.ts';
import { concat } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

ops.push({
  name: 'Split',
  infer: (ins, attrs) => {
    const x = ins[0];
    const axis = normAxis('Split', attrs.axis as number, x.rank);
    const sizes = attrs.split as number[];
    if (!Array.isArray(sizes) || sizes.length < 1 || sizes.some((s) => !Number.isInteger(s) || s < 1)) throw new GraphError('Split', 'split sizes must be positive integers');
    const total = sizes.reduce((a, b) => a + b, 0);
    if (total !== x.shape[axis]) throw new GraphError('Split', `sizes [${sizes.join(',')}] sum to ${total}, not axis ${axis}'s ${x.shape[axis]}`);
    return sizes.map((s) => ({ shape: x.shape.map((d, i) => (i === axis ? s : d)), dtype: x.dtype }));
  },
  emit: (e, n) => {
    const outs = n.outputs.map((t) => e.name(t));
    e.node('Split', [e.name(n.inputs[0]), e.i64(n.attrs.split as number[])], outs, { axis: n.attrs.axis as number });
  },
  vjp: (n, gs, needs) => {
    if (!needs[0] || gs.every((g) => g === null)) return [null];
    return [concat(n.outputs.map((o, i) => gs[i] ?? zerosLike(o)), n.attrs.axis as number)];
  },
});
