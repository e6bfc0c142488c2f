/**
 * Elementwise binary ops with numpy broadcasting: Add, Sub, Mul, Div, Pow, the comparisons, Where.
 */
import { GraphError, type Tensor } from '../graph.ts';
import { emitSame, type TypeInfo, type OpDef } from './registry.ts';
import { broadcastShapes, sameFloat } from './shape-rules.ts';
import { sumToShape, zerosLike } from './grad-helpers.ts';
import { sub, mul, div, pow, where, neg, log } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

function binaryInfer(name: string) {
  return (ins: readonly Tensor[]): TypeInfo[] => {
    const dt = ins[0].dtype;
    if (ins[1].dtype !== dt) throw new GraphError(name, `dtype mismatch ${dt} vs ${ins[1].dtype}`);
    return [{ shape: broadcastShapes(name, ins[0].shape, ins[1].shape), dtype: dt }];
  };
}

ops.push({
  name: 'Add',
  infer: binaryInfer('Add'),
  emit: emitSame('Add'),
  vjp: (n, [g]) => [sumToShape(g!, n.inputs[0].shape), sumToShape(g!, n.inputs[1].shape)],
});

ops.push({
  name: 'Sub',
  infer: binaryInfer('Sub'),
  emit: emitSame('Sub'),
  vjp: (n, [g], needs) => [sumToShape(g!, n.inputs[0].shape), needs[1] ? sumToShape(neg(g!), n.inputs[1].shape) : null],
});

ops.push({
  name: 'Mul',
  infer: binaryInfer('Mul'),
  emit: emitSame('Mul'),
  vjp: (n, [g], needs) => {
    const [a, b] = n.inputs;
    return [needs[0] ? sumToShape(mul(g!, b), a.shape) : null, needs[1] ? sumToShape(mul(g!, a), b.shape) : null];
  },
});

ops.push({
  name: 'Div',
  infer: binaryInfer('Div'),
  emit: emitSame('Div'),
  vjp: (n, [g], needs) => {
    const [a, b] = n.inputs;
    const y = n.outputs[0];
    return [
      needs[0] ? sumToShape(div(g!, b), a.shape) : null,
      needs[1] ? sumToShape(neg(div(mul(g!, y), b)), b.shape) : null,
    ];
  },
});

ops.push({
  name: 'Pow',
  infer: (ins) => {
    sameFloat('Pow', ins);
    return [{ shape: broadcastShapes('Pow', ins[0].shape, ins[1].shape), dtype: ins[0].dtype }];
  },
  emit: emitSame('Pow'),
  vjp: (n, [g], needs) => {
    const [a, p] = n.inputs;
    const y = n.outputs[0];
    const dt = a.dtype;
    const one = a.graph.scalar(1, dt);
    // d/da a^p = p a^(p-1); d/dp a^p = a^p ln a (defined for a > 0).
    return [
      needs[0] ? sumToShape(mul(g!, mul(p, pow(a, sub(p, one)))), a.shape) : null,
      needs[1] ? sumToShape(mul(g!, mul(y, log(a))), p.shape) : null,
    ];
  },
});

/** Comparison ops produce bool and carry no gradient. */
for (const name of ['Equal', 'Greater', 'Less']) {
  ops.push({
    name,
    infer: (ins) => {
      if (ins[0].dtype !== ins[1].dtype) throw new GraphError(name, 'dtype mismatch');
      return [{ shape: broadcastShapes(name, ins[0].shape, ins[1].shape), dtype: 'bool' }];
    },
    emit: emitSame(name),
    vjp: () => [null, null],
  });
}

ops.push({
  name: 'Where',
  infer: (ins) => {
    const [c, a, b] = ins;
    if (c.dtype !== 'bool') throw new GraphError('Where', 'condition must be bool');
    if (a.dtype !== b.dtype) throw new GraphError('Where', 'branch dtype mismatch');
    return [{ shape: broadcastShapes('Where', broadcastShapes('Where', c.shape, a.shape), b.shape), dtype: a.dtype }];
  },
  emit: emitSame('Where'),
  vjp: (n, [g], needs) => {
    const [c, a, b] = n.inputs;
    const z = zerosLike(g!);
    return [
      null,
      needs[1] ? sumToShape(where(c, g!, z), a.shape) : null,
      needs[2] ? sumToShape(where(c, z, g!), b.shape) : null,
    ];
  },
});
