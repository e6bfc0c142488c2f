/**
 * Elementwise float unary ops (one rule: same shape, float dtype): Neg, Exp, Log, Sqrt, Tanh, Sigmoid, Erf, Relu, Floor.
 */
import { emitSame, type OpDef } from './registry.ts';
import { sameFloat } from './shape-rules.ts';
import { zerosLike } from './grad-helpers.ts';
import { sub, mul, div, greater, where, neg, exp, sqrt, erf } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

function unaryFloat(name: string, vjp: OpDef['vjp'], onnxType = name): void {
  ops.push({
    name,
    infer: (ins) => [{ shape: ins[0].shape, dtype: sameFloat(name, ins) }],
    emit: emitSame(onnxType),
    vjp,
  });
}

unaryFloat('Neg', (_n, [g]) => [neg(g!)]);
unaryFloat('Exp', (n, [g]) => [mul(g!, n.outputs[0])]);
unaryFloat('Log', (n, [g]) => [div(g!, n.inputs[0])]);
unaryFloat('Sqrt', (n, [g]) => [div(mul(g!, g!.graph.scalar(0.5, g!.dtype)), n.outputs[0])]);
unaryFloat('Tanh', (n, [g]) => {
  const y = n.outputs[0];
  return [mul(g!, sub(y.graph.scalar(1, y.dtype), mul(y, y)))];
});
unaryFloat('Sigmoid', (n, [g]) => {
  const y = n.outputs[0];
  return [mul(g!, mul(y, sub(y.graph.scalar(1, y.dtype), y)))];
});
unaryFloat('Erf', (n, [g]) => {
  const x = n.inputs[0];
  // d/dx erf(x) = 2/sqrt(pi) * exp(-x^2)
  return [mul(g!, mul(x.graph.scalar(2 / Math.sqrt(Math.PI), x.dtype), exp(neg(mul(x, x)))))];
});
unaryFloat('Relu', (n, [g]) => {
  const x = n.inputs[0];
  return [where(greater(x, x.graph.scalar(0, x.dtype)), g!, zerosLike(g!))];
});

/** Floor: piecewise constant; declared without a VJP so a gradient through it is a GradientError. */
unaryFloat('Floor', undefined);
