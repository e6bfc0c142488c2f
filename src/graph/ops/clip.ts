/**
 * Clip and HardSigmoid (MobileNet-style activations).
 */
import { GraphError, isFloat, type Tensor, type GraphNode } from '../graph.ts';
import { type Emitter, type TypeInfo, type OpDef } from './registry.ts';
import { zerosLike } from './grad-helpers.ts';
import { mul, greater, less, where } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

function unaryInfer(name: string) {
  return (ins: readonly Tensor[]): TypeInfo[] => {
    if (!isFloat(ins[0].dtype)) throw new GraphError(name, `needs a float input, got ${ins[0].dtype}`);
    return [{ shape: ins[0].shape, dtype: ins[0].dtype }];
  };
}

/** Clip(x, min, max) with constant bounds (attributes `min`, `max`; ±Infinity for none). VJP: g where min < x < max. */
ops.push({
  name: 'Clip',
  infer: (ins, attrs) => {
    if (typeof attrs.min !== 'number' || typeof attrs.max !== 'number' || !(attrs.min <= attrs.max)) throw new GraphError('Clip', 'min and max must be numbers with min <= max');
    return unaryInfer('Clip')(ins);
  },
  emit: (e: Emitter, n: GraphNode) => {
    const dt = n.inputs[0].dtype as 'float32' | 'float64';
    const bound = (v: number): string => (Number.isFinite(v) ? e.scalar(v, dt) : '');
    const lo = bound(n.attrs.min as number);
    const hi = bound(n.attrs.max as number);
    const ins = [e.name(n.inputs[0]), lo, hi];
    while (ins[ins.length - 1] === '') ins.pop();
    e.node('Clip', ins, [e.name(n.outputs[0])]);
  },
  vjp: (n, [g]) => {
    const x = n.inputs[0];
    const z = zerosLike(g!);
    const lo = x.graph.scalar(Math.max(n.attrs.min as number, -Number.MAX_VALUE), x.dtype);
    const hi = x.graph.scalar(Math.min(n.attrs.max as number, Number.MAX_VALUE), x.dtype);
    return [where(less(x, lo), z, where(greater(x, hi), z, g!))];
  },
});

/** HardSigmoid: max(0, min(1, alpha·x + beta)). VJP: alpha·g where 0 < alpha·x + beta < 1. */
ops.push({
  name: 'HardSigmoid',
  infer: (ins, attrs) => {
    if (typeof attrs.alpha !== 'number' || typeof attrs.beta !== 'number') throw new GraphError('HardSigmoid', 'alpha and beta must be numbers');
    return unaryInfer('HardSigmoid')(ins);
  },
  emit: (e, n) => e.node('HardSigmoid', [e.name(n.inputs[0])], [e.name(n.outputs[0])], { alpha: n.attrs.alpha as number, beta: n.attrs.beta as number }),
  vjp: (n, [g]) => {
    const x = n.inputs[0];
    const gr = x.graph;
    const pre = n.attrs.alpha as number;
    const z = zerosLike(g!);
    if (pre === 0) return [z];
    // alpha·x + beta in (0, 1)  <=>  x in the open interval between the two break points (alpha may be negative).
    const lo = (0 - (n.attrs.beta as number)) / pre;
    const hi = (1 - (n.attrs.beta as number)) / pre;
    const [a, b] = lo < hi ? [lo, hi] : [hi, lo];
    const inside = where(less(x, gr.scalar(a, x.dtype)), z, where(greater(x, gr.scalar(b, x.dtype)), z, mul(g!, gr.scalar(pre, x.dtype))));
    return [inside];
  },
});
