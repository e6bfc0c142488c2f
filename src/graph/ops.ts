/**
 * The op table: every primitive is declared once, with its shape rule, its ONNX emission and its
 * vector-Jacobian product written in the same primitives (so the backward pass is just more graph,
 * in the spirit of tinygrad's gradient table).
 */
import { GraphError, Tensor, isFloat, shapeEq, shapeSize, type AttrValue, type Attrs, type DType, type GraphNode, type Shape } from './graph.ts';

/** Emits ONNX nodes for one graph node (see onnx-export.ts). */
export interface Emitter {
  /** The ONNX value name of a tensor. */
  name(t: Tensor): string;
  /** Append an ONNX node. */
  node(opType: string, inputs: readonly string[], outputs: readonly string[], attrs?: Readonly<Record<string, AttrValue>>, domain?: string): void;
  /** Name of a 1-D int64 constant holding `values`. */
  i64(values: readonly number[]): string;
  /** A fresh intermediate value name. */
  temp(): string;
  /** Whether a node output is used by the exported graph (unused optional outputs can be left empty). */
  isLive(t: Tensor): boolean;
  /** Name of a scalar float constant of the given dtype. */
  scalar(value: number, dtype: 'float32' | 'float64'): string;
}

export interface TypeInfo {
  shape: Shape;
  dtype: DType;
}

/** One primitive op. */
export interface OpDef {
  readonly name: string;
  /** Output types from input types and attributes; throws GraphError on a mismatch. */
  infer(inputs: readonly Tensor[], attrs: Attrs): TypeInfo[];
  /** Emit ONNX. */
  emit(e: Emitter, node: GraphNode): void;
  /**
   * Gradients of the inputs given the gradients of the outputs (null = no gradient flows into that output).
   * Absent: the op is not differentiable; asking for a gradient through it raises GradientError.
   */
  vjp?(node: GraphNode, gradOuts: readonly (Tensor | null)[], needs: readonly boolean[]): (Tensor | null)[];
}

const OPS = new Map<string, OpDef>();

/** Register an op (each name once). Exported so that extensions can add ops with their own VJPs. */
export function defineOp(def: OpDef): OpDef {
  if (OPS.has(def.name)) throw new Error(`op ${def.name} declared twice`);
  OPS.set(def.name, def);
  return def;
}

/** The op definition for a name; throws GraphError naming an unknown op. */
export function getOp(name: string): OpDef {
  const op = OPS.get(name);
  if (!op) throw new GraphError(name, 'unknown op');
  return op;
}

/** All declared op names (for tests asserting every op is gradchecked). */
export function opNames(): string[] {
  return [...OPS.keys()].sort();
}

function apply(op: string, inputs: readonly Tensor[], attrs: Attrs = {}): Tensor[] {
  if (inputs.length === 0) throw new GraphError(op, 'needs at least one input');
  const g = inputs[0].graph;
  const types = getOp(op).infer(inputs, attrs);
  return g.addNode(op, inputs, attrs, types);
}

function apply1(op: string, inputs: readonly Tensor[], attrs: Attrs = {}): Tensor {
  return apply(op, inputs, attrs)[0];
}

function emitSame(onnxType: string, domain?: string) {
  return (e: Emitter, n: GraphNode): void => {
    e.node(onnxType, n.inputs.map((t) => e.name(t)), n.outputs.map((t) => e.name(t)), n.attrs, domain);
  };
}

// ---------------------------------------------------------------------------------------------------------
// Shape helpers

/** numpy broadcasting of two shapes. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new GraphError(op, `shapes [${a.join(',')}] and [${b.join(',')}] do not broadcast`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new GraphError(op, `axis ${axis} out of range for rank ${rank}`);
  return a;
}

function sameFloat(op: string, ts: readonly Tensor[]): DType {
  const dt = ts[0].dtype;
  for (const t of ts) {
    if (t.dtype !== dt) throw new GraphError(op, `dtype mismatch: ${ts.map((x) => x.dtype).join(' vs ')}`);
  }
  if (!isFloat(dt)) throw new GraphError(op, `needs float inputs, got ${dt}`);
  return dt;
}

/**
 * Reduce a broadcast gradient back to `shape`: sum over the leading axes the input lacked and over the axes
 * where the input had size 1 (numpy broadcasting in reverse).
 */
export function sumToShape(grad: Tensor, shape: Shape): Tensor {
  if (shapeEq(grad.shape, shape)) return grad;
  const lead = grad.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < grad.rank; i++) {
    if (i < lead) axes.push(i);
    else if (shape[i - lead] === 1 && grad.shape[i] !== 1) axes.push(i);
  }
  let r = axes.length > 0 ? reduceSum(grad, axes, true) : grad;
  if (!shapeEq(r.shape, shape)) r = reshape(r, shape);
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// Elementwise binary ops with broadcasting

function binaryInfer(name: string) {
  return (ins: readonly Tensor[]): TypeInfo[] => {
    const dt = ins[0].dtype;
    if (ins[1].dtype !== dt) throw new GraphError(name, `dtype mismatch ${dt} vs ${ins[1].dtype}`);
    return [{ shape: broadcastShapes(name, ins[0].shape, ins[1].shape), dtype: dt }];
  };
}

defineOp({
  name: 'Add',
  infer: binaryInfer('Add'),
  emit: emitSame('Add'),
  vjp: (n, [g]) => [sumToShape(g!, n.inputs[0].shape), sumToShape(g!, n.inputs[1].shape)],
});

defineOp({
  name: 'Sub',
  infer: binaryInfer('Sub'),
  emit: emitSame('Sub'),
  vjp: (n, [g], needs) => [sumToShape(g!, n.inputs[0].shape), needs[1] ? sumToShape(neg(g!), n.inputs[1].shape) : null],
});

defineOp({
  name: 'Mul',
  infer: binaryInfer('Mul'),
  emit: emitSame('Mul'),
  vjp: (n, [g], needs) => {
    const [a, b] = n.inputs;
    return [needs[0] ? sumToShape(mul(g!, b), a.shape) : null, needs[1] ? sumToShape(mul(g!, a), b.shape) : null];
  },
});

defineOp({
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

defineOp({
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
  defineOp({
    name,
    infer: (ins) => {
      if (ins[0].dtype !== ins[1].dtype) throw new GraphError(name, 'dtype mismatch');
      return [{ shape: broadcastShapes(name, ins[0].shape, ins[1].shape), dtype: 'bool' }];
    },
    emit: emitSame(name),
    vjp: () => [null, null],
  });
}

defineOp({
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

// ---------------------------------------------------------------------------------------------------------
// Elementwise unary ops

function unaryFloat(name: string, vjp: OpDef['vjp'], onnxType = name): void {
  defineOp({
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

/** Index of the maximum along an axis (int64, keepdims 0). Not differentiable (integer output). */
defineOp({
  name: 'ArgMax',
  infer: (ins, attrs) => {
    const axis = normAxis('ArgMax', attrs.axis as number, ins[0].rank);
    return [{ shape: ins[0].shape.filter((_, i) => i !== axis), dtype: 'int64' }];
  },
  emit: (e, n) => e.node('ArgMax', [e.name(n.inputs[0])], [e.name(n.outputs[0])], { axis: n.attrs.axis as number, keepdims: 0 }),
});

defineOp({
  name: 'Identity',
  infer: (ins) => [{ shape: ins[0].shape, dtype: ins[0].dtype }],
  emit: emitSame('Identity'),
  vjp: (_n, [g]) => [g],
});

/** Identity in the forward pass; blocks the gradient. */
defineOp({
  name: 'StopGradient',
  infer: (ins) => [{ shape: ins[0].shape, dtype: ins[0].dtype }],
  emit: (e, n) => e.node('Identity', [e.name(n.inputs[0])], [e.name(n.outputs[0])]),
  vjp: () => [null],
});

defineOp({
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

// ---------------------------------------------------------------------------------------------------------
// MatMul (batched, numpy semantics; both operands rank >= 2)

defineOp({
  name: 'MatMul',
  infer: (ins) => {
    const [a, b] = ins;
    const dt = sameFloat('MatMul', ins);
    if (a.rank < 2 || b.rank < 2) throw new GraphError('MatMul', 'operands must have rank >= 2');
    const [m, k] = a.shape.slice(-2);
    const [k2, n] = b.shape.slice(-2);
    if (k !== k2) throw new GraphError('MatMul', `inner dims differ: [${a.shape.join(',')}] x [${b.shape.join(',')}]`);
    const batch = broadcastShapes('MatMul', a.shape.slice(0, -2), b.shape.slice(0, -2));
    return [{ shape: [...batch, m, n], dtype: dt }];
  },
  emit: emitSame('MatMul'),
  vjp: (n, [g], needs) => {
    const [a, b] = n.inputs;
    let ga: Tensor | null = null;
    let gb: Tensor | null = null;
    // Batched operands with the same batch axes (attention's P·V): one FusedMatMul per gradient with the
    // transpose folded in. An explicit transpose here would be merged by onnxruntime with the head transpose
    // that produced the operand into one [B, h, d, n] transpose, which costs more than the matmul itself.
    const sameBatch = a.rank === b.rank && a.rank >= 3 && a.shape.slice(0, -2).every((d, i) => d === b.shape[i]);
    if (needs[0]) ga = sameBatch ? matmulT(g!, b, { transB: true }) : sumToShape(matmul(g!, transposeLast2(b)), a.shape);
    if (needs[1] && sameBatch) gb = matmulT(a, g!, { transA: true });
    else if (needs[1]) {
      if (b.rank === 2 && a.rank > 2) {
        // Weight gradient of a batched activation: the batch flattened into rows.
        gb = weightGrad(a, g!);
      } else {
        gb = sumToShape(matmul(transposeLast2(a), g!), b.shape);
      }
    }
    return [ga, gb];
  },
});

/**
 * C = alpha · op(A) · op(B) with op = transpose of the last two axes where transA / transB is set: onnxruntime's
 * contrib FusedMatMul (com.microsoft). Attention uses it for Q·Kᵀ so that K never has to be materialized in the
 * [B, h, hd, n] layout (that Transpose cost more than the matmul on 2 cores). Batch axes must match exactly.
 * VJP, with g = dC: (A·Bᵀ) dA = α g·B, dB = α gᵀ·A; (A·B) dA = α g·Bᵀ, dB = α Aᵀ·g; (Aᵀ·B) dA = α B·gᵀ,
 * dB = α A·g; (Aᵀ·Bᵀ) dA = α Bᵀ·gᵀ, dB = α gᵀ·Aᵀ: each one FusedMatMul.
 */
defineOp({
  name: 'MatMulT',
  infer: (ins, attrs) => {
    const [a, b] = ins;
    const dt = sameFloat('MatMulT', ins);
    if (a.rank < 2 || a.rank !== b.rank) throw new GraphError('MatMulT', 'operands must have the same rank >= 2');
    if (a.shape.slice(0, -2).some((d, i) => d !== b.shape[i])) throw new GraphError('MatMulT', `batch axes differ: [${a.shape.join(',')}] x [${b.shape.join(',')}]`);
    if (typeof attrs.alpha !== 'number' || !Number.isFinite(attrs.alpha)) throw new GraphError('MatMulT', 'alpha must be a finite number');
    const [a0, a1] = a.shape.slice(-2);
    const [b0, b1] = b.shape.slice(-2);
    const [m, k] = attrs.transA ? [a1, a0] : [a0, a1];
    const [k2, n] = attrs.transB ? [b1, b0] : [b0, b1];
    if (k !== k2) throw new GraphError('MatMulT', `inner dims differ: [${a.shape.join(',')}]${attrs.transA ? 'ᵀ' : ''} x [${b.shape.join(',')}]${attrs.transB ? 'ᵀ' : ''}`);
    return [{ shape: [...a.shape.slice(0, -2), m, n], dtype: dt }];
  },
  emit: (e, n) => e.node('FusedMatMul', n.inputs.map((t) => e.name(t)), [e.name(n.outputs[0])], { alpha: n.attrs.alpha as number, transA: n.attrs.transA as number, transB: n.attrs.transB as number }, 'com.microsoft'),
  vjp: (n, [g], needs) => {
    const [a, b] = n.inputs;
    const al = n.attrs.alpha as number;
    const tA = n.attrs.transA === 1;
    const tB = n.attrs.transB === 1;
    let ga: Tensor | null = null;
    let gb: Tensor | null = null;
    if (needs[0]) ga = !tA ? matmulT(g!, b, { transB: !tB, alpha: al }) : tB ? matmulT(b, g!, { transA: true, transB: true, alpha: al }) : matmulT(b, g!, { transB: true, alpha: al });
    if (needs[1]) gb = !tB ? (tA ? matmulT(a, g!, { alpha: al }) : matmulT(a, g!, { transA: true, alpha: al })) : tA ? matmulT(g!, a, { transA: true, transB: true, alpha: al }) : matmulT(g!, a, { transA: true, alpha: al });
    return [ga, gb];
  },
});

/**
 * Scaled dot-product attention core, o = softmax(scale·q·kᵀ)·v over the last two axes, as a composite with its own
 * VJP. Inputs q [..., n, d], k [..., m, d], v [..., m, e] (same batch axes); outputs o [..., n, e] and the
 * probabilities p [..., n, m]. Emitted as FusedMatMul, Softmax, MatMul. The VJP uses the identity
 * rowsum(dp ⊙ p) = rowsum(do ⊙ o) (FlashAttention's D term): ds = p ⊙ (dp − D) costs two passes over the
 * [n, m] scores instead of the three plus a reduction of softmax's generic VJP, and the scale folds into the
 * FusedMatMuls of dq and dk.
 */
defineOp({
  name: 'Attention',
  infer: (ins, attrs) => {
    const [q, k, v] = ins;
    const dt = sameFloat('Attention', ins);
    if (q.rank < 2 || k.rank !== q.rank || v.rank !== q.rank) throw new GraphError('Attention', 'q, k and v must have the same rank >= 2');
    const lead = q.shape.slice(0, -2);
    if (k.shape.slice(0, -2).some((d, i) => d !== lead[i]) || v.shape.slice(0, -2).some((d, i) => d !== lead[i])) {
      throw new GraphError('Attention', `batch axes differ: q [${q.shape.join(',')}], k [${k.shape.join(',')}], v [${v.shape.join(',')}]`);
    }
    const [n, d] = q.shape.slice(-2);
    const [m, dk] = k.shape.slice(-2);
    const [mv, e] = v.shape.slice(-2);
    if (d !== dk) throw new GraphError('Attention', `q and k feature sizes differ: ${d} vs ${dk}`);
    if (m !== mv) throw new GraphError('Attention', `k and v lengths differ: ${m} vs ${mv}`);
    if (typeof attrs.scale !== 'number' || !Number.isFinite(attrs.scale)) throw new GraphError('Attention', 'scale must be a finite number');
    return [{ shape: [...lead, n, e], dtype: dt }, { shape: [...lead, n, m], dtype: dt }];
  },
  emit: (e, n) => {
    const [q, k, v] = n.inputs.map((t) => e.name(t));
    const [o, pOut] = n.outputs;
    const s = e.temp();
    const p = e.isLive(pOut) ? e.name(pOut) : e.temp();
    e.node('FusedMatMul', [q, k], [s], { alpha: n.attrs.scale as number, transA: 0, transB: 1 }, 'com.microsoft');
    e.node('Softmax', [s], [p], { axis: -1 });
    e.node('MatMul', [p, v], [e.name(o)]);
  },
  vjp: (n, [go, gp], needs) => {
    const [q, k, v] = n.inputs;
    const [o, p] = n.outputs;
    const scale = n.attrs.scale as number;
    const last = q.rank - 1;
    let dp: Tensor | null = go ? matmulT(go, v, { transB: true }) : null;
    if (gp) dp = dp ? add(dp, gp) : gp;
    if (dp === null) return [null, null, null];
    // rowsum(dp ⊙ p), from the small [n, e] side when only o is used downstream.
    const rowDot = gp ? reduceSum(mul(dp, p), [last], true) : reduceSum(mul(go!, o), [last], true);
    const ds = needs[0] || needs[1] ? mul(p, sub(dp, rowDot)) : null;
    return [
      needs[0] ? matmulT(ds!, k, { alpha: scale }) : null,
      needs[1] ? matmulT(ds!, q, { transA: true, alpha: scale }) : null,
      needs[2] && go ? matmulT(p, go, { transA: true }) : null,
    ];
  },
});

function transposeLast2(t: Tensor): Tensor {
  const perm = t.shape.map((_, i) => i);
  perm[t.rank - 2] = t.rank - 1;
  perm[t.rank - 1] = t.rank - 2;
  return transpose(t, perm);
}

// ---------------------------------------------------------------------------------------------------------
// Reductions

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

defineOp({
  name: 'ReduceSum',
  infer: reduceInfer('ReduceSum'),
  emit: (e, n) => {
    // opset 13+: axes is an input.
    e.node('ReduceSum', [e.name(n.inputs[0]), e.i64(n.attrs.axes as number[])], [e.name(n.outputs[0])], { keepdims: n.attrs.keepdims as number });
  },
  vjp: (n, [g]) => [unreduce(g!, n.inputs[0], n.attrs.axes as number[], n.attrs.keepdims === 1)],
});

defineOp({
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
defineOp({
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

// ---------------------------------------------------------------------------------------------------------
// Softmax (opset 13 semantics: one axis)

defineOp({
  name: 'Softmax',
  infer: (ins, attrs) => {
    normAxis('Softmax', attrs.axis as number, ins[0].rank);
    return [{ shape: ins[0].shape, dtype: sameFloat('Softmax', ins) }];
  },
  emit: emitSame('Softmax'),
  vjp: (n, [g]) => {
    const y = n.outputs[0];
    const axis = n.attrs.axis as number;
    // dx = y * (g - sum(g * y, axis))
    return [mul(y, sub(g!, reduceSum(mul(g!, y), [axis], true)))];
  },
});

// ---------------------------------------------------------------------------------------------------------
// Shape ops

function resolveReshape(op: string, from: Shape, to: readonly number[]): number[] {
  const out = to.map((d, i) => (d === 0 ? from[i] : d));
  const minus = out.filter((d) => d === -1).length;
  if (minus > 1) throw new GraphError(op, 'at most one -1 in a reshape');
  const known = out.reduce((p, d) => (d === -1 ? p : p * d), 1);
  const total = shapeSize(from);
  if (minus === 1) {
    if (known === 0 || total % known !== 0) throw new GraphError(op, `cannot reshape [${from.join(',')}] to [${to.join(',')}]`);
    out[out.indexOf(-1)] = total / known;
  }
  if (shapeSize(out) !== total) throw new GraphError(op, `cannot reshape [${from.join(',')}] to [${to.join(',')}]`);
  return out;
}

defineOp({
  name: 'Reshape',
  infer: (ins, attrs) => [{ shape: resolveReshape('Reshape', ins[0].shape, attrs.shape as number[]), dtype: ins[0].dtype }],
  emit: (e, n) => e.node('Reshape', [e.name(n.inputs[0]), e.i64(n.outputs[0].shape)], [e.name(n.outputs[0])]),
  vjp: (n, [g]) => [reshape(g!, n.inputs[0].shape)],
});

defineOp({
  name: 'Transpose',
  infer: (ins, attrs) => {
    const perm = attrs.perm as number[];
    const x = ins[0];
    if (perm.length !== x.rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
      throw new GraphError('Transpose', `perm [${perm.join(',')}] is not a permutation of rank ${x.rank}`);
    }
    return [{ shape: perm.map((p) => x.shape[p]), dtype: x.dtype }];
  },
  emit: emitSame('Transpose'),
  vjp: (n, [g]) => {
    const perm = n.attrs.perm as number[];
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [transpose(g!, inv)];
  },
});

defineOp({
  name: 'Expand',
  infer: (ins, attrs) => [{ shape: broadcastShapes('Expand', ins[0].shape, attrs.shape as number[]), dtype: ins[0].dtype }],
  emit: (e, n) => e.node('Expand', [e.name(n.inputs[0]), e.i64(n.attrs.shape as number[])], [e.name(n.outputs[0])]),
  vjp: (n, [g]) => [sumToShape(g!, n.inputs[0].shape)],
});

defineOp({
  name: 'Unsqueeze',
  infer: (ins, attrs) => {
    const x = ins[0];
    const outRank = x.rank + (attrs.axes as number[]).length;
    const axes = (attrs.axes as number[]).map((a) => normAxis('Unsqueeze', a, outRank));
    const shape: number[] = [];
    let j = 0;
    for (let i = 0; i < outRank; i++) shape.push(axes.includes(i) ? 1 : x.shape[j++]);
    return [{ shape, dtype: x.dtype }];
  },
  emit: (e, n) => e.node('Unsqueeze', [e.name(n.inputs[0]), e.i64(n.attrs.axes as number[])], [e.name(n.outputs[0])]),
  vjp: (n, [g]) => [reshape(g!, n.inputs[0].shape)],
});

defineOp({
  name: 'Squeeze',
  infer: (ins, attrs) => {
    const x = ins[0];
    const axes = (attrs.axes as number[]).map((a) => normAxis('Squeeze', a, x.rank));
    for (const a of axes) if (x.shape[a] !== 1) throw new GraphError('Squeeze', `axis ${a} has size ${x.shape[a]}, not 1`);
    return [{ shape: x.shape.filter((_, i) => !axes.includes(i)), dtype: x.dtype }];
  },
  emit: (e, n) => e.node('Squeeze', [e.name(n.inputs[0]), e.i64(n.attrs.axes as number[])], [e.name(n.outputs[0])]),
  vjp: (n, [g]) => [reshape(g!, n.inputs[0].shape)],
});

defineOp({
  name: 'Concat',
  infer: (ins, attrs) => {
    const axis = normAxis('Concat', attrs.axis as number, ins[0].rank);
    const shape = [...ins[0].shape];
    for (const t of ins.slice(1)) {
      if (t.rank !== ins[0].rank || t.dtype !== ins[0].dtype || t.shape.some((d, i) => i !== axis && d !== shape[i])) {
        throw new GraphError('Concat', `incompatible operand [${t.shape.join(',')}] vs [${ins[0].shape.join(',')}] on axis ${axis}`);
      }
      shape[axis] += t.shape[axis];
    }
    return [{ shape, dtype: ins[0].dtype }];
  },
  emit: emitSame('Concat'),
  vjp: (n, [g], needs) => {
    const axis = normAxis('Concat', n.attrs.axis as number, g!.rank);
    let off = 0;
    return n.inputs.map((t, i) => {
      const start = off;
      off += t.shape[axis];
      return needs[i] ? slice(g!, [start], [off], [axis]) : null;
    });
  },
});

defineOp({
  name: 'Slice',
  infer: (ins, attrs) => {
    const x = ins[0];
    const starts = attrs.starts as number[];
    const ends = attrs.ends as number[];
    const axes = (attrs.axes as number[]).map((a) => normAxis('Slice', a, x.rank));
    const shape = [...x.shape];
    axes.forEach((a, i) => {
      const d = x.shape[a];
      const s = clampIdx(starts[i], d);
      const e = clampIdx(ends[i], d);
      if (e < s) throw new GraphError('Slice', `empty slice ${starts[i]}:${ends[i]} on axis ${a}`);
      shape[a] = e - s;
    });
    return [{ shape, dtype: x.dtype }];
  },
  emit: (e, n) => {
    const x = n.inputs[0];
    const axes = (n.attrs.axes as number[]).map((a) => normAxis('Slice', a, x.rank));
    const starts = (n.attrs.starts as number[]).map((s, i) => clampIdx(s, x.shape[axes[i]]));
    const ends = (n.attrs.ends as number[]).map((s, i) => clampIdx(s, x.shape[axes[i]]));
    e.node('Slice', [e.name(x), e.i64(starts), e.i64(ends), e.i64(axes)], [e.name(n.outputs[0])]);
  },
  vjp: (n, [g]) => {
    const x = n.inputs[0];
    const axes = (n.attrs.axes as number[]).map((a) => normAxis('Slice', a, x.rank));
    const before = new Array<number>(x.rank).fill(0);
    const after = new Array<number>(x.rank).fill(0);
    axes.forEach((a, i) => {
      const s = clampIdx((n.attrs.starts as number[])[i], x.shape[a]);
      const e = clampIdx((n.attrs.ends as number[])[i], x.shape[a]);
      before[a] = s;
      after[a] = x.shape[a] - e;
    });
    return [pad(g!, before, after)];
  },
});

function clampIdx(i: number, d: number): number {
  const v = i < 0 ? i + d : i;
  return Math.max(0, Math.min(d, v));
}

/** Zero padding (constant mode). */
defineOp({
  name: 'Pad',
  infer: (ins, attrs) => {
    const b = attrs.before as number[];
    const a = attrs.after as number[];
    if (b.length !== ins[0].rank || a.length !== ins[0].rank || [...a, ...b].some((p) => p < 0)) {
      throw new GraphError('Pad', 'pads must be non-negative, one per axis');
    }
    return [{ shape: ins[0].shape.map((d, i) => d + b[i] + a[i]), dtype: ins[0].dtype }];
  },
  emit: (e, n) => {
    e.node('Pad', [e.name(n.inputs[0]), e.i64([...(n.attrs.before as number[]), ...(n.attrs.after as number[])])], [e.name(n.outputs[0])], { mode: 'constant' });
  },
  vjp: (n, [g]) => {
    const b = n.attrs.before as number[];
    const x = n.inputs[0];
    const axes = x.shape.map((_, i) => i);
    return [slice(g!, b, b.map((s, i) => s + x.shape[i]), axes)];
  },
});

/**
 * dense + pad(small, before): `small` added into the block of `dense` that starts at offset `before`, as one
 * ScatterND(reduction add). Autodiff emits it when it accumulates a Slice's gradient (a zero-padded tensor) into
 * a dense one, so the padded copy is never materialized (the exit heads' CLS slices, for instance). Every axis
 * after the last offset/narrowed axis must be full.
 */
defineOp({
  name: 'AddPadded',
  infer: (ins, attrs) => {
    const [dense, small] = ins;
    const before = attrs.before as number[];
    sameFloat('AddPadded', ins);
    if (dense.rank !== small.rank || before.length !== dense.rank) throw new GraphError('AddPadded', 'dense, small and offsets must have the same rank');
    if (before.some((b, i) => !(Number.isInteger(b) && b >= 0 && b + small.shape[i] <= dense.shape[i]))) {
      throw new GraphError('AddPadded', `block [${small.shape.join(',')}] at [${before.join(',')}] exceeds [${dense.shape.join(',')}]`);
    }
    return [{ shape: dense.shape, dtype: dense.dtype }];
  },
  emit: (e, n) => {
    const [dense, small] = n.inputs;
    const before = n.attrs.before as number[];
    let last = -1;
    for (let i = 0; i < dense.rank; i++) if (before[i] !== 0 || small.shape[i] !== dense.shape[i]) last = i;
    const lead = small.shape.slice(0, last + 1);
    const idx: number[] = [];
    const count = lead.reduce((a, b) => a * b, 1);
    for (let f = 0; f < count; f++) {
      const coord: number[] = [];
      let r = f;
      for (let i = lead.length - 1; i >= 0; i--) {
        coord.unshift((r % lead[i]) + before[i]);
        r = Math.floor(r / lead[i]);
      }
      idx.push(...coord);
    }
    const indices = e.temp();
    e.node('Reshape', [e.i64(idx), e.i64([...lead, last + 1])], [indices]);
    e.node('ScatterND', [e.name(dense), indices, e.name(small)], [e.name(n.outputs[0])], { reduction: 'add' });
  },
  vjp: (n, [g], needs) => {
    const [, small] = n.inputs;
    const before = n.attrs.before as number[];
    const axes = small.shape.map((_, i) => i);
    return [needs[0] ? g : null, needs[1] ? slice(g!, before, before.map((b, i) => b + small.shape[i]), axes) : null];
  },
});

defineOp({
  name: 'Gather',
  infer: (ins, attrs) => {
    const [x, idx] = ins;
    if (idx.dtype !== 'int64' && idx.dtype !== 'int32') throw new GraphError('Gather', 'indices must be int32 or int64');
    const axis = normAxis('Gather', attrs.axis as number, x.rank);
    return [{ shape: [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)], dtype: x.dtype }];
  },
  emit: emitSame('Gather'),
  vjp: (n, [g], needs) => {
    if (!needs[0]) return [null, null];
    const [x, idx] = n.inputs;
    const axis = normAxis('Gather', n.attrs.axis as number, x.rank);
    // Scatter-add the gradient rows back: ScatterElements(zeros, indices broadcast to g, g, reduction=add).
    const k = idx.size;
    const gShape = [...x.shape.slice(0, axis), k, ...x.shape.slice(axis + 1)];
    const g2 = reshape(g!, gShape);
    const idxShape = gShape.map((_, i) => (i === axis ? k : 1));
    const idxB = expand(reshape(cast(idx, 'int64'), idxShape), gShape);
    return [scatterAdd(zerosLike(x), idxB, g2, axis), null];
  },
});

/** ScatterElements with reduction 'add' (opset 16). Indices must be in range and non-negative. */
defineOp({
  name: 'ScatterAdd',
  infer: (ins) => {
    const [x, idx, upd] = ins;
    if (!shapeEq(idx.shape, upd.shape)) throw new GraphError('ScatterAdd', 'indices and updates must have one shape');
    if (upd.dtype !== x.dtype) throw new GraphError('ScatterAdd', 'dtype mismatch');
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  emit: (e, n) => e.node('ScatterElements', n.inputs.map((t) => e.name(t)), [e.name(n.outputs[0])], { axis: n.attrs.axis as number, reduction: 'add' }),
  vjp: (n, [g], needs) => {
    const [, idx] = n.inputs;
    const axis = n.attrs.axis as number;
    return [needs[0] ? g : null, null, needs[2] ? gatherElements(g!, idx, axis) : null];
  },
});

defineOp({
  name: 'GatherElements',
  infer: (ins) => [{ shape: ins[1].shape, dtype: ins[0].dtype }],
  emit: emitSame('GatherElements'),
  vjp: (n, [g], needs) => {
    const [x, idx] = n.inputs;
    return [needs[0] ? scatterAdd(zerosLike(x), idx, g!, n.attrs.axis as number) : null, null];
  },
});

/** A zero tensor shaped like `t` (built from a scalar zero, so it costs no initializer bytes). */
export function zerosLike(t: Tensor): Tensor {
  return expand(t.graph.scalar(0, t.dtype), t.shape);
}

// ---------------------------------------------------------------------------------------------------------
// Fused ops (used where they measurably beat the composed form; each with its own VJP)

/**
 * LayerNormalization over the last axis (opset 17), returning [y, mean, invStdDev]. The VJP reuses the saved
 * statistics: with xh = (x - mean) * inv and gy = g * gamma,
 * dx = inv * (gy - mean(gy) - xh * mean(gy * xh)), dgamma = sum(g * xh), dbeta = sum(g).
 */
defineOp({
  name: 'LayerNorm',
  infer: (ins, attrs) => {
    const [x, w, b] = ins;
    const dt = sameFloat('LayerNorm', ins);
    // onnxruntime's CPU LayerNormalization keeps its statistics in float32 (stash_type 1) and has no float64 kernel.
    if (dt !== 'float32') throw new GraphError('LayerNorm', 'the fused op is float32 only; use layerNormComposed for float64');
    checkLayerNormParams('LayerNorm', x, w, b, attrs);
    const statShape = [...x.shape.slice(0, -1), 1];
    return [
      { shape: x.shape, dtype: dt },
      { shape: statShape, dtype: dt },
      { shape: statShape, dtype: dt },
    ];
  },
  emit: (e, n) => {
    // Mean and InvStdDev are optional outputs: leave them off when the backward pass does not use them.
    const outs = n.outputs.map((t, i) => (i === 0 || e.isLive(t) ? e.name(t) : ''));
    while (outs[outs.length - 1] === '') outs.pop();
    e.node('LayerNormalization', n.inputs.map((t) => e.name(t)), outs, { axis: -1, epsilon: n.attrs.epsilon as number });
  },
  vjp: (n, [g], needs) => {
    const [x, w, b] = n.inputs;
    const [, mean, inv] = n.outputs;
    if (g === null) return [null, null, null];
    const xh = mul(sub(x, mean), inv);
    let gx: Tensor | null = null;
    if (needs[0]) {
      const gy = mul(g, w);
      const last = x.rank - 1;
      gx = mul(inv, sub(sub(gy, reduceMean(gy, [last], true)), mul(xh, reduceMean(mul(gy, xh), [last], true))));
    }
    const lead = x.shape.slice(0, -1).map((_, i) => i);
    return [
      gx,
      needs[1] ? reduceSum(mul(g, xh), lead, false) : null,
      needs[2] ? (lead.length ? reduceSum(g, lead, false) : g) : null,
    ].map((t, i) => (t !== null && i > 0 && !shapeEq(t.shape, b.shape) ? reshape(t, b.shape) : t));
  },
});

/** Exact GELU as ORT's contrib op com.microsoft.Gelu (x * Phi(x)); VJP: Phi(x) + x * phi(x). */
defineOp({
  name: 'GeluFused',
  infer: (ins) => [{ shape: ins[0].shape, dtype: sameFloat('GeluFused', ins) }],
  emit: (e, n) => e.node('Gelu', [e.name(n.inputs[0])], [e.name(n.outputs[0])], {}, 'com.microsoft'),
  vjp: (n, [g]) => [mul(mul(g!, n.inputs[0].graph.scalar(0.5, n.inputs[0].dtype)), twiceGeluDerivative(n.inputs[0]))],
});

/**
 * Exact GELU followed by a linear map, y = gelu(x)·W + c (W [d, o], c [o]): the MLP's second half. Outputs
 * [y, gelu(x), 1 + erf(t), t, 2·gelu(x)] with t = x/√2; the last three exist for the VJP. Emitted as
 * com.microsoft.Gelu, MatMul, Add when nothing differentiates it (inference). In a training graph, where the VJP
 * keeps t and 1 + erf(t), the forward is Mul, Erf, Add, Mul (x·(1 + erf(t)) = 2·gelu(x)) and a FusedMatMul with
 * alpha ½, and the VJP needs six element-wise passes with no second Erf, the ½ of gelu'(x) going into the dx GEMM's
 * alpha (GeluFused's VJP needs ten). Same bits as the fused kernel on onnxruntime 1.29's CPU provider.
 * (ONNX Sum for the derivative's terms measured slower than Adds.)
 */
defineOp({
  name: 'GeluLinear',
  infer: (ins) => {
    const [x, W, c] = ins;
    const dt = sameFloat('GeluLinear', ins);
    if (dt !== 'float32') throw new GraphError('GeluLinear', "float32 only (onnxruntime's CPU Gelu and Erf kernels); use gelu for float64");
    const d = x.shape[x.rank - 1];
    if (x.rank < 2) throw new GraphError('GeluLinear', 'x must have rank >= 2');
    if (W.rank !== 2 || W.shape[0] !== d) throw new GraphError('GeluLinear', `weight must be [${d}, out], got [${W.shape.join(',')}]`);
    if (c.rank !== 1 || c.shape[0] !== W.shape[1]) throw new GraphError('GeluLinear', `bias must be [${W.shape[1]}]`);
    const same = { shape: x.shape, dtype: dt };
    return [{ shape: [...x.shape.slice(0, -1), W.shape[1]], dtype: dt }, same, same, same, same];
  },
  emit: (e, n) => {
    const [x, W, c] = n.inputs.map((t) => e.name(t));
    const [y, aOut, e1Out, tOut, a2Out] = n.outputs;
    const a = e.isLive(aOut) ? e.name(aOut) : e.temp();
    const yt = e.temp();
    if (![e1Out, tOut, a2Out].some((o) => e.isLive(o))) {
      // Inference: onnxruntime's fused exact Gelu.
      e.node('Gelu', [x], [a], {}, 'com.microsoft');
      e.node('MatMul', [a, W], [yt]);
    } else {
      // Training: 2·gelu(x) = x·(1 + erf(t)), t = x/√2, keeping t and 1 + erf(t) for the VJP; the ½ goes into the GEMM.
      const dt = n.inputs[0].dtype as 'float32' | 'float64';
      const live = (o: Tensor): string => (e.isLive(o) ? e.name(o) : e.temp());
      const [t, e1, er, a2] = [live(tOut), live(e1Out), e.temp(), live(a2Out)];
      e.node('Mul', [x, e.scalar(Math.SQRT1_2, dt)], [t]);
      e.node('Erf', [t], [er]);
      e.node('Add', [er, e.scalar(1, dt)], [e1]);
      e.node('Mul', [x, e1], [a2]);
      e.node('FusedMatMul', [a2, W], [yt], { alpha: 0.5, transA: 0, transB: 0 }, 'com.microsoft');
      if (e.isLive(aOut)) e.node('Mul', [a2, e.scalar(0.5, dt)], [a]);
    }
    e.node('Add', [yt, c], [e.name(y)]);
  },
  vjp: (n, [gy, ga, ge1, gt, ga2], needs) => {
    if (ge1 || gt || ga2) throw new GraphError('GeluLinear', 'gradients through its saved terms are not supported');
    const [x, W] = n.inputs;
    const [, , e1, t, a2] = n.outputs;
    const lead = x.shape.slice(0, -1).map((_, i) => i);
    let gx: Tensor | null = null;
    if (needs[0] && (gy || ga)) {
      // ½·(dy·Wᵀ) (+ ½·da when gelu(x) is also used elsewhere), times 2·gelu'(x) = (1 + erf(t)) + 2x·φ(x), from
      // the forward's t and 1 + erf(t): six element-wise passes, Erf not recomputed.
      const half = x.graph.scalar(0.5, x.dtype);
      let gh = gy ? reshape(matmulT(flatRows(gy), W, { transB: true, alpha: 0.5 }), x.shape) : null;
      if (ga) gh = gh ? add(gh, mul(ga, half)) : mul(ga, half);
      gx = mul(gh!, add(e1, twoXPdf(x, t)));
    }
    return [
      gx,
      needs[1] && gy ? weightGrad(a2, gy, 0.5) : null,
      needs[2] && gy ? reduceSum(gy, lead, false) : null,
    ];
  },
});

/**
 * LayerNorm over the last axis as a composite with its own VJP. The forward is emitted as the primitive chain
 * ReduceMean, Sub, Mul, ReduceMean, Add(eps), Sqrt, Div, Mul(w), Add(b), which onnxruntime 1.29 runs 2-3x
 * faster than its LayerNormalization kernel; outputs [y, xh, std]. The VJP is the compact closed form
 * (about 10 ops instead of ~25 from differentiating the chain):
 * with gy = g * w: dx = (gy - mean(gy) - xh * mean(gy * xh)) / std, dw = sum(g * xh), db = sum(g).
 */
defineOp({
  name: 'LayerNormC',
  infer: (ins, attrs) => {
    const [x, w, b] = ins;
    const dt = sameFloat('LayerNormC', ins);
    checkLayerNormParams('LayerNormC', x, w, b, attrs);
    const statShape = [...x.shape.slice(0, -1), 1];
    return [{ shape: x.shape, dtype: dt }, { shape: x.shape, dtype: dt }, { shape: statShape, dtype: dt }];
  },
  emit: (e, n) => {
    const [y, xh, std] = n.outputs;
    emitLayerNormChain(e, n.inputs[0], n.inputs[1], n.inputs[2], n.attrs.epsilon as number, e.name(y), xh, std);
  },
  vjp: (n, [g], needs) => {
    const [x, w, b] = n.inputs;
    const [, xh, std] = n.outputs;
    return g === null ? [null, null, null] : layerNormVjp(x, w, b, xh, std, g, needs);
  },
});

/** The checks every LayerNorm form makes: scale and bias [d] for x [..., d], epsilon > 0. */
function checkLayerNormParams(op: string, x: Tensor, w: Tensor, b: Tensor, attrs: Attrs): void {
  const d = x.shape[x.rank - 1];
  if (w.rank !== 1 || w.shape[0] !== d || b.rank !== 1 || b.shape[0] !== d) throw new GraphError(op, `scale and bias must be [${d}]`);
  if (typeof attrs.epsilon !== 'number' || !(attrs.epsilon > 0)) throw new GraphError(op, 'epsilon must be > 0');
}

/** LayerNormC's ONNX chain; writes y, and xh and std where they are live (else temporaries). */
function emitLayerNormChain(e: Emitter, xT: Tensor, wT: Tensor, bT: Tensor, epsilon: number, y: string, xhOut: Tensor, stdOut: Tensor): void {
  const [x, w, b] = [xT, wT, bT].map((t) => e.name(t));
  const dt = xT.dtype as 'float32' | 'float64';
  const axes = [xT.rank - 1];
  const [mu, xc, sq, v, ve, yw] = [e.temp(), e.temp(), e.temp(), e.temp(), e.temp(), e.temp()];
  const std = e.isLive(stdOut) ? e.name(stdOut) : e.temp();
  const xh = e.isLive(xhOut) ? e.name(xhOut) : e.temp();
  e.node('ReduceMean', [x], [mu], { axes, keepdims: 1 });
  e.node('Sub', [x, mu], [xc]);
  e.node('Mul', [xc, xc], [sq]);
  e.node('ReduceMean', [sq], [v], { axes, keepdims: 1 });
  e.node('Add', [v, e.scalar(epsilon, dt)], [ve]);
  e.node('Sqrt', [ve], [std]);
  e.node('Div', [xc, std], [xh]);
  e.node('Mul', [xh, w], [yw]);
  e.node('Add', [yw, b], [y]);
}

/**
 * LayerNorm's closed-form VJP from the saved xh and std, given g = dL/dy: with gy = g * w,
 * dx = (gy - mean(gy) - xh * mean(gy * xh)) / std, dw = sum(g * xh), db = sum(g).
 */
function layerNormVjp(x: Tensor, w: Tensor, b: Tensor, xh: Tensor, std: Tensor, g: Tensor, needs: readonly boolean[]): (Tensor | null)[] {
  const last = x.rank - 1;
  let gx: Tensor | null = null;
  if (needs[0]) {
    const gy = mul(g, w);
    gx = div(sub(sub(gy, reduceMean(gy, [last], true)), mul(xh, reduceMean(mul(gy, xh), [last], true))), std);
  }
  const lead = x.shape.slice(0, -1).map((_, i) => i);
  return [
    gx,
    needs[1] ? reshape(reduceSum(mul(g, xh), lead, false), w.shape) : null,
    needs[2] ? reshape(lead.length ? reduceSum(g, lead, false) : g, b.shape) : null,
  ];
}

/**
 * LayerNorm over the last axis followed by k linear maps of its output, y_j = LN(x)·W_j + c_j (W_j [d, o_j],
 * c_j [o_j]): attention's q, k, v projections, the MLP's fc1. Forward: LayerNormC's chain, then MatMul + Add per
 * map. Outputs [y_1..y_k, ln, xh, std]. The VJP for x runs the dx GEMMs against W̃_j = C·diag(w)·W_j, where C
 * centres over the d input features (a [d, o_j] op per step; constant-folded for frozen weights). Then
 * ĝ = Σ_j dy_j·W̃_jᵀ is the gradient of the normalized input with its mean already removed, so LayerNorm's
 * backward drops the scale by w, a mean and a subtraction: dx = (ĝ - xh·mean(ĝ·xh)) / std. With w or b
 * trained it takes the plain closed form.
 */
defineOp({
  name: 'LayerNormLinear',
  infer: (ins, attrs) => {
    const [x, w, b] = ins;
    const dt = sameFloat('LayerNormLinear', ins);
    const d = x.shape[x.rank - 1];
    const k = attrs.count as number;
    if (!Number.isInteger(k) || k < 1 || ins.length !== 3 + 2 * k) throw new GraphError('LayerNormLinear', 'needs x, w, b and count (weight, bias) pairs');
    if (x.rank < 2) throw new GraphError('LayerNormLinear', 'x must have rank >= 2');
    checkLayerNormParams('LayerNormLinear', x, w, b, attrs);
    const ys: TypeInfo[] = [];
    for (let j = 0; j < k; j++) {
      const W = ins[3 + 2 * j];
      const c = ins[4 + 2 * j];
      if (W.rank !== 2 || W.shape[0] !== d) throw new GraphError('LayerNormLinear', `weight ${j} must be [${d}, out], got [${W.shape.join(',')}]`);
      if (c.rank !== 1 || c.shape[0] !== W.shape[1]) throw new GraphError('LayerNormLinear', `bias ${j} must be [${W.shape[1]}]`);
      ys.push({ shape: [...x.shape.slice(0, -1), W.shape[1]], dtype: dt });
    }
    return [...ys, { shape: x.shape, dtype: dt }, { shape: x.shape, dtype: dt }, { shape: [...x.shape.slice(0, -1), 1], dtype: dt }];
  },
  emit: (e, n) => {
    const k = n.attrs.count as number;
    const [x, w, b] = n.inputs;
    const ln = e.isLive(n.outputs[k]) ? e.name(n.outputs[k]) : e.temp();
    emitLayerNormChain(e, x, w, b, n.attrs.epsilon as number, ln, n.outputs[k + 1], n.outputs[k + 2]);
    for (let j = 0; j < k; j++) {
      const t = e.temp();
      e.node('MatMul', [ln, e.name(n.inputs[3 + 2 * j])], [t]);
      e.node('Add', [t, e.name(n.inputs[4 + 2 * j])], [e.name(n.outputs[j])]);
    }
  },
  vjp: (n, grads, needs) => {
    const k = n.attrs.count as number;
    const [x, w, b] = n.inputs;
    const [ln, xh, std] = n.outputs.slice(k);
    if (grads[k + 1] || grads[k + 2]) throw new GraphError('LayerNormLinear', 'gradients through xh and std are not supported');
    const d = x.shape[x.rank - 1];
    const lead = x.shape.slice(0, -1).map((_, i) => i);
    const out: (Tensor | null)[] = new Array(n.inputs.length).fill(null);
    const maps = Array.from({ length: k }, (_, j) => ({ W: n.inputs[3 + 2 * j], g: grads[j], iW: 3 + 2 * j }));
    for (const { g, iW } of maps) {
      if (!g) continue;
      if (needs[iW]) out[iW] = weightGrad(ln, g);
      if (needs[iW + 1]) out[iW + 1] = reduceSum(g, lead, false);
    }
    if (!needs[0] && !needs[1] && !needs[2]) return out;
    const acc = (terms: Tensor[]): Tensor | null => (terms.length ? terms.reduce((s, t) => add(s, t)) : null);
    const live = maps.filter((m) => m.g);
    if (!needs[1] && !needs[2] && !grads[k]) {
      const wCol = reshape(w, [d, 1]);
      const gh = acc(live.map(({ W, g }) => {
        const ww = mul(W, wCol);
        return reshape(matmulT(flatRows(g!), sub(ww, reduceMean(ww, [0], true)), { transB: true }), x.shape);
      }));
      if (gh) out[0] = div(sub(gh, mul(xh, reduceMean(mul(gh, xh), [x.rank - 1], true))), std);
      return out;
    }
    const gln = acc([...live.map(({ W, g }) => reshape(matmulT(flatRows(g!), W, { transB: true }), x.shape)), ...(grads[k] ? [grads[k]!] : [])]);
    if (gln) [out[0], out[1], out[2]] = layerNormVjp(x, w, b, xh, std, gln, needs);
    return out;
  },
});

/**
 * The weight gradient xᵀ·g [d, o] of a linear map, summed over the flattened leading axes of x [..., d] and
 * g [..., o]. A long reduction (batch × tokens rows) with small d and o leaves MLAS little to split across threads,
 * so the rows are cut into up to four chunks of at least 512: one batched FusedMatMul, then a ReduceSum over the
 * chunks. At batch 64 on vit-tiny (3,200 rows) this took the LoRA step 1.3 ms and the full step 2 ms faster than
 * one [d, 3200] x [3200, o] GEMM (interleaved A/B).
 */
function weightGrad(x: Tensor, g: Tensor, alpha = 1): Tensor {
  const d = x.shape[x.rank - 1];
  const o = g.shape[g.rank - 1];
  const rows = shapeSize(x.shape) / d;
  const parts = [4, 2].find((p) => rows % p === 0 && rows / p >= 512);
  if (parts) return reduceSum(matmulT(reshape(x, [parts, rows / parts, d]), reshape(g, [parts, rows / parts, o]), { transA: true, alpha }), [0], false);
  return matmulT(reshape(x, [rows, d]), reshape(g, [rows, o]), { transA: true, alpha });
}

/**
 * 2·gelu'(x) = 1 + erf(t) + 2x·φ(x) with t = x/√2: eight element-wise ops. Uses Mul by 1/√2 (the composed forward
 * uses Div) so that CSE cannot merge it into the forward chain and break ORT's Gelu fusion.
 */
function twiceGeluDerivative(x: Tensor): Tensor {
  const t = mul(x, x.graph.scalar(Math.SQRT1_2, x.dtype));
  return add(add(erf(t), x.graph.scalar(1, x.dtype)), twoXPdf(x, t));
}

/** 2x·φ(x) = x·exp(ln(2/√(2π)) − t²) for t = x/√2, the constant folded into the exponent. */
function twoXPdf(x: Tensor, t: Tensor): Tensor {
  return mul(x, exp(sub(x.graph.scalar(0.5 * Math.log(2 / Math.PI), x.dtype), mul(t, t))));
}

/** [..., d] -> [rows, d]. */
function flatRows(t: Tensor): Tensor {
  return reshape(t, [-1, t.shape[t.rank - 1]]);
}

// ---------------------------------------------------------------------------------------------------------
// The builder API

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
