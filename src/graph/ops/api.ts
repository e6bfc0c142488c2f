/**
 * The builder API: one function per op (by name through the op table), plus the composed helpers.
 */
import { GraphError, shapeEq, type Tensor, type DType } from '../graph.ts';
import { apply, apply1 } from './registry.ts';
import { resolveReshape } from './shape-rules.ts';

export function add(a: Tensor, b: Tensor): Tensor { return apply1('Add', [a, b]); }
export function sub(a: Tensor, b: Tensor): Tensor { return apply1('Sub', [a, b]); }
export function mul(a: Tensor, b: Tensor): Tensor { return apply1('Mul', [a, b]); }
export function div(a: Tensor, b: Tensor): Tensor { return apply1('Div', [a, b]); }
export function pow(a: Tensor, p: Tensor): Tensor { return apply1('Pow', [a, p]); }
export function equal(a: Tensor, b: Tensor): Tensor { return apply1('Equal', [a, b]); }
export function greater(a: Tensor, b: Tensor): Tensor { return apply1('Greater', [a, b]); }
export function less(a: Tensor, b: Tensor): Tensor { return apply1('Less', [a, b]); }
export function where(c: Tensor, a: Tensor, b: Tensor): Tensor { return apply1('Where', [c, a, b]); }
export function neg(x: Tensor): Tensor { return apply1('Neg', [x]); }
export function exp(x: Tensor): Tensor { return apply1('Exp', [x]); }
export function log(x: Tensor): Tensor { return apply1('Log', [x]); }
export function sqrt(x: Tensor): Tensor { return apply1('Sqrt', [x]); }
export function tanh(x: Tensor): Tensor { return apply1('Tanh', [x]); }
export function sigmoid(x: Tensor): Tensor { return apply1('Sigmoid', [x]); }
export function erf(x: Tensor): Tensor { return apply1('Erf', [x]); }
export function relu(x: Tensor): Tensor { return apply1('Relu', [x]); }
export function identity(x: Tensor): Tensor { return apply1('Identity', [x]); }
export function floor(x: Tensor): Tensor { return apply1('Floor', [x]); }
export function argMax(x: Tensor, axis = -1): Tensor { return apply1('ArgMax', [x], { axis }); }
export function stopGradient(x: Tensor): Tensor { return apply1('StopGradient', [x]); }
export function cast(x: Tensor, to: DType): Tensor { return apply1('Cast', [x], { to }); }
export function matmul(a: Tensor, b: Tensor): Tensor { return apply1('MatMul', [a, b]); }
/** alpha · op(a) · op(b), op transposing the last two axes where asked (onnxruntime's FusedMatMul); same batch axes. */
export function matmulT(a: Tensor, b: Tensor, o: { transA?: boolean; transB?: boolean; alpha?: number } = {}): Tensor {
  return apply1('MatMulT', [a, b], { transA: o.transA ? 1 : 0, transB: o.transB ? 1 : 0, alpha: o.alpha ?? 1 });
}
export function reduceSum(x: Tensor, axes: readonly number[], keepdims = false): Tensor {
  return apply1('ReduceSum', [x], { axes: [...axes], keepdims: keepdims ? 1 : 0 });
}
export function reduceMean(x: Tensor, axes: readonly number[], keepdims = false): Tensor {
  return apply1('ReduceMean', [x], { axes: [...axes], keepdims: keepdims ? 1 : 0 });
}
export function reduceMax(x: Tensor, axes: readonly number[], keepdims = false): Tensor {
  return apply1('ReduceMax', [x], { axes: [...axes], keepdims: keepdims ? 1 : 0 });
}
export function softmax(x: Tensor, axis = -1): Tensor { return apply1('Softmax', [x], { axis }); }
/** softmax(scale·q·kᵀ)·v over the last two axes (the 'Attention' composite); returns o. */
export function attention(q: Tensor, k: Tensor, v: Tensor, scale: number): Tensor {
  return apply('Attention', [q, k, v], { scale })[0];
}
/** The 'Attention' composite's output o and probabilities p (both differentiable). */
export function attentionWithProbs(q: Tensor, k: Tensor, v: Tensor, scale: number): [Tensor, Tensor] {
  const [o, p] = apply('Attention', [q, k, v], { scale });
  return [o, p];
}
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const resolved = resolveReshape('Reshape', x.shape, shape);
  if (shapeEq(resolved, x.shape)) return x;
  return apply1('Reshape', [x], { shape: resolved });
}
export function transpose(x: Tensor, perm: readonly number[]): Tensor { return apply1('Transpose', [x], { perm: [...perm] }); }
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  if (shapeEq(x.shape, shape)) return x;
  return apply1('Expand', [x], { shape: [...shape] });
}
export function unsqueeze(x: Tensor, axes: readonly number[]): Tensor { return apply1('Unsqueeze', [x], { axes: [...axes] }); }
export function squeeze(x: Tensor, axes: readonly number[]): Tensor { return apply1('Squeeze', [x], { axes: [...axes] }); }
export function concat(xs: readonly Tensor[], axis: number): Tensor { return apply1('Concat', xs, { axis }); }
/** Consecutive parts of `x` along `axis` with the given sizes (ONNX Split). */
export function split(x: Tensor, sizes: readonly number[], axis: number): Tensor[] { return apply('Split', [x], { axis, split: [...sizes] }); }
export function slice(x: Tensor, starts: readonly number[], ends: readonly number[], axes: readonly number[]): Tensor {
  if (starts.length !== ends.length || starts.length !== axes.length) throw new GraphError('Slice', 'starts, ends and axes must have one length');
  return apply1('Slice', [x], { starts: [...starts], ends: [...ends], axes: [...axes] });
}
/** dense + pad(small) with `small` at offset `before` (the 'AddPadded' op: one in-place ScatterND add). */
export function addPadded(dense: Tensor, small: Tensor, before: readonly number[]): Tensor {
  return apply1('AddPadded', [dense, small], { before: [...before] });
}
export function pad(x: Tensor, before: readonly number[], after: readonly number[]): Tensor {
  return apply1('Pad', [x], { before: [...before], after: [...after] });
}
export function gather(x: Tensor, indices: Tensor, axis = 0): Tensor { return apply1('Gather', [x, indices], { axis }); }
export function gatherElements(x: Tensor, indices: Tensor, axis: number): Tensor { return apply1('GatherElements', [x, indices], { axis }); }
export function scatterAdd(x: Tensor, indices: Tensor, updates: Tensor, axis: number): Tensor {
  return apply1('ScatterAdd', [x, indices, updates], { axis });
}
/** Fused LayerNormalization over the last axis; returns the normalized output only. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, epsilon = 1e-5): Tensor {
  return apply('LayerNorm', [x, weight, bias], { epsilon })[0];
}
/**
 * LayerNorm as a composite op with a closed-form VJP (emitted as primitives; the fastest form in
 * onnxruntime 1.29 for both passes). What the model uses.
 */
export function layerNormC(x: Tensor, weight: Tensor, bias: Tensor, epsilon = 1e-5): Tensor {
  return apply('LayerNormC', [x, weight, bias], { epsilon })[0];
}
/**
 * LayerNorm(x) followed by linear maps of it, [LN(x)·W_j + c_j] (the 'LayerNormLinear' composite; W_j [d, o_j]).
 */
export function layerNormLinear(x: Tensor, weight: Tensor, bias: Tensor, maps: readonly { weight: Tensor; bias: Tensor }[], epsilon = 1e-5): Tensor[] {
  return apply('LayerNormLinear', [x, weight, bias, ...maps.flatMap((m) => [m.weight, m.bias])], { epsilon, count: maps.length }).slice(0, maps.length);
}
/** LayerNorm composed from primitives and differentiated by autodiff (reference for the composite ops). */
export function layerNormComposed(x: Tensor, weight: Tensor, bias: Tensor, epsilon = 1e-5): Tensor {
  const last = x.rank - 1;
  const mu = reduceMean(x, [last], true);
  const xc = sub(x, mu);
  const v = reduceMean(mul(xc, xc), [last], true);
  return add(mul(div(xc, sqrt(add(v, x.graph.scalar(epsilon, x.dtype)))), weight), bias);
}
/** Exact GELU composed from Erf: 0.5 x (1 + erf(x / sqrt 2)). ORT's optimizer fuses this pattern. */
export function gelu(x: Tensor): Tensor {
  const gr = x.graph;
  const dt = x.dtype;
  return mul(mul(x, add(erf(div(x, gr.scalar(Math.SQRT2, dt))), gr.scalar(1, dt))), gr.scalar(0.5, dt));
}
/** gelu(x)·W + c (the 'GeluLinear' composite; W [d, o]). */
export function geluLinear(x: Tensor, weight: Tensor, bias: Tensor): Tensor { return apply1('GeluLinear', [x, weight, bias]); }
/** The 'GeluLinear' composite's outputs y and gelu(x) (both differentiable). */
export function geluLinearWithAct(x: Tensor, weight: Tensor, bias: Tensor): [Tensor, Tensor] {
  const [y, a] = apply('GeluLinear', [x, weight, bias]);
  return [y, a];
}
/** Exact GELU as ORT's fused contrib op. */
export function geluFused(x: Tensor): Tensor { return apply1('GeluFused', [x]); }

/**
 * Mean softmax cross-entropy of `logits` [B, C] against integer `labels` [B], composed from primitives:
 * mean_b( logsumexp(z_b) - z_b[y_b] ) with z = logits - stopGradient(max(logits)) for stability.
 */
export function softmaxCrossEntropy(logits: Tensor, labels: Tensor): Tensor {
  if (logits.rank !== 2) throw new GraphError('SoftmaxCrossEntropy', 'logits must be [batch, classes]');
  if (labels.rank !== 1 || labels.shape[0] !== logits.shape[0]) throw new GraphError('SoftmaxCrossEntropy', 'labels must be [batch]');
  if (labels.dtype !== 'int64' && labels.dtype !== 'int32') throw new GraphError('SoftmaxCrossEntropy', 'labels must be int32 or int64');
  const g = logits.graph;
  const c = logits.shape[1];
  const z = sub(logits, stopGradient(reduceMax(logits, [1], true)));
  const lse = log(reduceSum(exp(z), [1], true));
  const classes = g.constant(Array.from({ length: c }, (_, i) => i), [1, c], labels.dtype);
  const onehot = cast(equal(unsqueeze(labels, [1]), classes), logits.dtype);
  const picked = reduceSum(mul(z, onehot), [1], true);
  return reduceMean(sub(lse, picked), [0, 1], false);
}

/** Sum of all elements to a scalar. */
export function sumAll(x: Tensor): Tensor {
  return reduceSum(x, x.shape.map((_, i) => i), false);
}

export function conv2d(x: Tensor, w: Tensor, b: Tensor | null, o: { strides?: number[]; pads?: number[]; dilations?: number[]; group?: number } = {}): Tensor {
  return apply1('Conv', b ? [x, w, b] : [x, w], { strides: o.strides ?? [1, 1], pads: o.pads ?? [0, 0, 0, 0], dilations: o.dilations ?? [1, 1], group: o.group ?? 1 });
}
export function maxPool2d(x: Tensor, kernel: readonly number[], o: { strides?: number[]; pads?: number[]; dilations?: number[] } = {}): Tensor {
  return apply1('MaxPool', [x], { kernel: [...kernel], strides: o.strides ?? [...kernel], pads: o.pads ?? [0, 0, 0, 0], dilations: o.dilations ?? [1, 1] });
}
export function clip(x: Tensor, min = -Infinity, max = Infinity): Tensor { return apply1('Clip', [x], { min, max }); }
export function hardSigmoid(x: Tensor, alpha = 0.2, beta = 0.5): Tensor { return apply1('HardSigmoid', [x], { alpha, beta }); }
/** Frozen (inference-mode) BatchNormalization over axis 1 from primitives: (x − mean)·scale/√(var + eps) + bias. */
export function batchNormInference(x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, variance: Tensor, epsilon = 1e-5): Tensor {
  const C = x.shape[1];
  for (const t of [scale, bias, mean, variance]) if (t.rank !== 1 || t.shape[0] !== C) throw new GraphError('BatchNormalization', `scale, bias, mean and var must be [${C}]`);
  const per = [1, C, ...x.shape.slice(2).map(() => 1)];
  const inv = div(scale, sqrt(add(variance, x.graph.scalar(epsilon, variance.dtype))));
  const shift = sub(bias, mul(mean, inv));
  return add(mul(x, reshape(inv, per)), reshape(shift, per));
}

/** ONNX GlobalAveragePool: the mean over every spatial axis, kept as size 1. */
export function globalAveragePool(x: Tensor): Tensor {
  if (x.rank < 3) throw new GraphError('GlobalAveragePool', `needs [N, C, spatial...], got [${x.shape.join(',')}]`);
  return reduceMean(x, x.shape.slice(2).map((_, i) => i + 2), true);
}

/** ONNX Flatten: [d0 .. d(axis-1)] and [d(axis) ..] each multiplied into one axis. */
export function flatten(x: Tensor, axis = 1): Tensor {
  const a = axis < 0 ? axis + x.rank : axis;
  if (!Number.isInteger(a) || a < 0 || a > x.rank) throw new GraphError('Flatten', `axis ${axis} out of range for rank ${x.rank}`);
  const lead = x.shape.slice(0, a).reduce((p, d) => p * d, 1);
  const rest = x.shape.slice(a).reduce((p, d) => p * d, 1);
  return reshape(x, [lead, rest]);
}
