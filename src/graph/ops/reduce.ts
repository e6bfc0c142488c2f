/**
 * Reductions (ReduceSum, ReduceMean, ReduceMax; they share the shape rule and the unreduce VJP helper).
 */
import { GraphError, type Tensor, type Attrs } from '../graph.ts';
import { emitSame, type TypeInfo, type OpDef } from './registry.ts';
import { normAxis } from './shape-rules.ts';
import { mul, div, equal, cast, reduceSum, reshape, expand } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

function reduceInfer(name: string) {
  return (ins: readonly Tensor[], attrs: Attrs): TypeInfo[] => {
    const x = ins[0];
    const axes = (attrs.axes as number[]).map((a) => normAxis(name, a, x.rank));
    if (new Set(axes).size !== axes.length) throw new GraphError(name, 'repeated axis');
    const keep = attrs.keepdims === 1;
    const shape: number[] = [];
    x.shape.forEach((d, i) => {
      if (axes.includes(i)) {
        if (keep) shape.push(1);
      } else shape.push(d);
    });
    return [{ shape, dtype: x.dtype }];
  };
}

/** Broadcast a reduced gradient back over the reduced axes. */
function unreduce(g: Tensor, x: Tensor, axes: readonly number[], keep: boolean): Tensor {
  const norm = axes.map((a) => (a < 0 ? a + x.rank : a)).sort((p, q) => p - q);
  const gk = keep ? g : reshape(g, x.shape.map((d, i) => (norm.includes(i) ? 1 : d)));
  return expand(gk, x.shape);
}

ops.push({
  name: 'ReduceSum',
  infer: reduceInfer('ReduceSum'),
  emit: (e, n) => {
    // opset 13+: axes is an input.
    e.node('ReduceSum', [e.name(n.inputs[0]), e.i64(n.attrs.axes as number[])], [e.name(n.outputs[0])], { keepdims: n.attrs.keepdims as number });
  },
  vjp: (n, [g]) => [unreduce(g!, n.inputs[0], n.attrs.axes as number[], n.attrs.keepdims === 1)],
});

ops.push({
  name: 'ReduceMean',
  infer: reduceInfer('ReduceMean'),
  emit: emitSame('ReduceMean'), // opset 17: axes is an attribute
  vjp: (n, [g]) => {
    const x = n.inputs[0];
    const axes = (n.attrs.axes as number[]).map((a) => (a < 0 ? a + x.rank : a));
    const count = axes.reduce((p, a) => p * x.shape[a], 1);
    return [mul(unreduce(g!, x, axes, n.attrs.keepdims === 1), x.graph.scalar(1 / count, x.dtype))];
  },
});

/** ReduceMax: gradient goes to the arg-max positions (split evenly between ties). */
ops.push({
  name: 'ReduceMax',
  infer: reduceInfer('ReduceMax'),
  emit: emitSame('ReduceMax'),
  vjp: (n, [g]) => {
    const x = n.inputs[0];
    const axes = n.attrs.axes as number[];
    const keep = n.attrs.keepdims === 1;
    const y = unreduce(n.outputs[0], x, axes, keep);
    const mask = cast(equal(x, y), x.dtype);
    const cnt = unreduce(reduceSum(mask, axes, keep), x, axes, keep);
    return [div(mul(unreduce(g!, x, axes, keep), mask), cnt)];
  },
});
