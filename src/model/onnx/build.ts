/**
 * Building an imported ONNX graph as an fmfl graph: each node either folds to a constant (fold.ts) or maps onto
 * the op table (src/graph), so autodiff, LoRA injection, exits and segments work on it as on the built-in ViT.
 * An op without a mapping raises OnnxImportError('unsupported-op') naming the op, the node and what to do.
 */
import * as G from '../../graph/index.ts';
import type { Graph, Tensor } from '../../graph/index.ts';
import type { LoraConfig, ParamSource } from '../vit.ts';
import { FOLD, constantNode, broadcast, shapeNode, sliceRanges } from './fold.ts';
import { planResize, resizeTensor, type ResizeAttrs } from './resize.ts';
import { OnnxImportError } from './read.ts';
import { ATTENTION_OP } from './fuse-attention.ts';
import { GELU_LINEAR_OP } from './fuse-gelu-linear.ts';
import { LAYERNORM_LINEAR_OP, fusedMatMuls } from './fuse-layernorm-linear.ts';
import type { ConstDType, ConstValue, ImportedGraph, IrNode, LoraSite } from './ir.ts';

/** A value while building: a graph tensor or a folded constant. */
export type Value = { t: Tensor } | { c: ConstValue };

export interface BuildContext {
  g: Graph;
  env: Map<string, Value>;
  param: ParamSource;
  lora: LoraConfig | null;
  /** ONNX weight name → fmfl tensor name. */
  weights: Map<string, string>;
  /** ONNX node name → its LoRA site. */
  sites: Map<string, LoraSite>;
  consts: Readonly<Record<string, ConstValue>>;
  opset: number;
}

export function buildContext(ir: ImportedGraph, g: Graph, param: ParamSource, lora: LoraConfig | null): BuildContext {
  return { g, env: new Map(), param, lora, weights: new Map(ir.weights.map((w) => [w.onnx, w.name])), sites: new Map(ir.lora.map((s) => [s.node, s])), consts: ir.consts, opset: ir.opset };
}

/**
 * Build the nodes that `targets` need on a throwaway graph at `batch`, with every weight a graph input of its
 * stored shape and no LoRA: the context then holds each value's shape and the folded constants at that batch.
 */
export function buildProbe(ir: ImportedGraph, batch: number, targets: readonly string[]): BuildContext {
  const g = new G.Graph();
  const shapes = new Map(ir.weights.map((w) => [w.name, w.shape]));
  const made = new Map<string, Tensor>();
  const param: ParamSource = (name) => {
    let t = made.get(name);
    if (!t) made.set(name, (t = g.input(name, shapes.get(name) ?? [1])));
    return t;
  };
  const cx = buildContext(ir, g, param, null);
  cx.env.set(ir.input.name, { t: g.input('images', [batch, ir.input.channels, ir.input.size, ir.input.size]) });
  for (const n of nodesFor(ir, targets)) runNode(cx, n);
  return cx;
}

/** The value of an ONNX name: computed, a weight (through `param`), or a constant. */
export function valueOf(cx: BuildContext, name: string, n: IrNode): Value {
  const v = cx.env.get(name);
  if (v) return v;
  const w = cx.weights.get(name);
  if (w) {
    const t = { t: cx.param(w) };
    cx.env.set(name, t);
    return t;
  }
  const c = cx.consts[name];
  if (c) return { c };
  throw new OnnxImportError('structure', `input '${name}' is not available here (a segment reads a tensor from an earlier block other than its input)`, { op: n.op, node: n.name });
}

const isConst = (v: Value | undefined): v is { c: ConstValue } | undefined => !v || 'c' in v;
const where = (n: IrNode) => ({ op: n.op, node: n.name });
const unsupported = (n: IrNode, what: string): OnnxImportError => new OnnxImportError('unsupported-form', what, where(n));

const TYPED: Record<ConstDType, (d: number[]) => G.TensorData> = {
  float32: (d) => Float32Array.from(d),
  float64: (d) => Float64Array.from(d),
  int32: (d) => Int32Array.from(d),
  int64: (d) => BigInt64Array.from(d.map((x) => BigInt(Math.trunc(x)))),
  bool: (d) => Uint8Array.from(d),
};

/** A value as a tensor; a float constant takes the float dtype of `like` when given. */
function T(cx: BuildContext, v: Value | undefined, n: IrNode, like?: Value): Tensor {
  if (!v) throw new OnnxImportError('malformed', 'a required input is missing', where(n));
  if ('t' in v) return v.t;
  let dt = v.c.dtype;
  if ((dt === 'float32' || dt === 'float64') && like && 't' in like && (like.t.dtype === 'float32' || like.t.dtype === 'float64')) dt = like.t.dtype;
  return cx.g.constant(TYPED[dt](v.c.data), v.c.shape, dt);
}

const ints = (n: IrNode, v: Value | undefined, what: string): number[] => {
  if (!v) throw new OnnxImportError('malformed', `missing ${what}`, where(n));
  if ('t' in v) throw unsupported(n, `${what} must be a constant (it depends on tensor values, not only on shapes); fmfl builds static-shape graphs`);
  return v.c.data;
};

const attrInt = (n: IrNode, k: string, d: number): number => (typeof n.attrs[k] === 'number' ? (n.attrs[k] as number) : d);
const attrNum = attrInt;

type Handler = (cx: BuildContext, n: IrNode, ins: (Value | undefined)[]) => Tensor[];

const binary = (f: (a: Tensor, b: Tensor) => Tensor): Handler => (cx, n, [a, b]) => [f(T(cx, a, n, b), T(cx, b, n, a))];
const unary = (f: (a: Tensor) => Tensor): Handler => (cx, n, [a]) => [f(T(cx, a, n))];
const axis = (n: IrNode, a: number, rank: number): number => {
  const r = a < 0 ? a + rank : a;
  if (r < 0 || r >= rank) throw new OnnxImportError('malformed', `axis ${a} out of range for rank ${rank}`, where(n));
  return r;
};

/** Weight [in, out] of a MatMul/Gemm with LoRA merged in when the node is a LoRA site: W + (alpha/r)·A·B. */
function withLora(cx: BuildContext, n: IrNode | string, w: Tensor): Tensor {
  const site = cx.sites.get(typeof n === 'string' ? n : n.name);
  if (!site || !cx.lora) return w;
  const ab = G.matmul(cx.param(`${site.prefix}.lora_a`), cx.param(`${site.prefix}.lora_b`));
  return G.add(w, G.mul(ab, cx.g.scalar(cx.lora.alpha / cx.lora.rank, w.dtype)));
}

function spatialPads(n: IrNode, x: Tensor, kernel: number[], strides: number[], dilations: number[]): number[] {
  const mode = (n.attrs.auto_pad as string | undefined) ?? 'NOTSET';
  if (mode === 'NOTSET') return (n.attrs.pads as number[] | undefined) ?? [0, 0, 0, 0];
  if (mode === 'VALID') return [0, 0, 0, 0];
  if (mode !== 'SAME_UPPER' && mode !== 'SAME_LOWER') throw unsupported(n, `auto_pad ${mode}`);
  const pads = [0, 0, 0, 0];
  for (let i = 0; i < 2; i++) {
    const inp = x.shape[2 + i];
    const out = Math.ceil(inp / strides[i]);
    const total = Math.max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - inp);
    const small = Math.floor(total / 2);
    pads[i] = mode === 'SAME_UPPER' ? small : total - small;
    pads[i + 2] = total - pads[i];
  }
  return pads;
}

const isFloat32or64 = (x: Tensor): boolean => x.dtype === 'float32' || x.dtype === 'float64';

function pool2(n: IrNode, x: Tensor): void {
  if (x.rank !== 4) throw unsupported(n, `only 2-D pooling of [N, C, H, W] is supported, got rank ${x.rank}`);
}

/** The tensor handlers, by ONNX op type. */
const OPS: Readonly<Record<string, Handler>> = {
  Identity: (cx, n, [a]) => [T(cx, a, n)],
  Dropout: (cx, n, [a]) => [T(cx, a, n)],
  Add: binary(G.add),
  Sub: binary(G.sub),
  Mul: binary(G.mul),
  Div: binary(G.div),
  Pow: (cx, n, [a, b]) => {
    const p = b && 'c' in b && b.c.data.length === 1 ? b.c.data[0] : null;
    const x = T(cx, a, n);
    return [p === 2 ? G.mul(x, x) : p === 0.5 ? G.sqrt(x) : G.pow(x, T(cx, b, n, a))];
  },
  Equal: binary(G.equal),
  Greater: binary(G.greater),
  Less: binary(G.less),
  Where: (cx, n, [c, a, b]) => [G.where(T(cx, c, n), T(cx, a, n, b), T(cx, b, n, a))],
  Neg: unary(G.neg),
  Exp: unary(G.exp),
  Log: unary(G.log),
  Sqrt: unary(G.sqrt),
  Tanh: unary(G.tanh),
  Sigmoid: unary(G.sigmoid),
  Erf: unary(G.erf),
  Relu: unary(G.relu),
  Gelu: (cx, n, [a]) => {
    if ((n.attrs.approximate ?? 'none') !== 'none') throw unsupported(n, `approximate='${String(n.attrs.approximate)}' GELU is not supported; export with the exact (erf) GELU`);
    const x = T(cx, a, n);
    // ORT's fused Gelu (float32) with its own VJP, as the native ViT; the Erf composition otherwise.
    return [x.dtype === 'float32' ? G.geluFused(x) : G.gelu(x)];
  },
  Clip: (cx, n, [a, lo, hi]) => {
    const bound = (v: Value | undefined, attr: string, d: number): number => (v ? ints(n, v, attr)[0] : attrNum(n, attr, d));
    return [G.clip(T(cx, a, n), bound(lo, 'min', -Infinity), bound(hi, 'max', Infinity))];
  },
  HardSigmoid: (cx, n, [a]) => [G.hardSigmoid(T(cx, a, n), attrNum(n, 'alpha', 0.2), attrNum(n, 'beta', 0.5))],
  HardSwish: (cx, n, [a]) => {
    const x = T(cx, a, n);
    return [G.mul(x, G.hardSigmoid(x, 1 / 6, 0.5))];
  },
  Cast: (cx, n, [a]) => {
    const x = T(cx, a, n);
    const to = ({ 1: 'float32', 6: 'int32', 7: 'int64', 9: 'bool', 11: 'float64' } as const)[n.attrs.to as 1 | 6 | 7 | 9 | 11];
    if (!to) throw unsupported(n, `cast to type ${String(n.attrs.to)}`);
    return [to === x.dtype ? x : G.cast(x, to)];
  },
  MatMul: (cx, n, [a, b]) => {
    const x = T(cx, a, n);
    const w = T(cx, b, n, a);
    if (x.rank < 2 || w.rank < 2) throw unsupported(n, 'MatMul with a 1-D operand');
    return [G.matmul(x, w.rank === 2 ? withLora(cx, n, w) : w)];
  },
  Gemm: (cx, n, [a, b, c]) => {
    let x = T(cx, a, n);
    let w = T(cx, b, n, a);
    if (attrInt(n, 'transA', 0)) x = G.transpose(x, [1, 0]);
    if (attrInt(n, 'transB', 0)) w = G.transpose(w, [1, 0]);
    let y = G.matmul(x, withLora(cx, n, w));
    const alpha = attrNum(n, 'alpha', 1);
    const beta = attrNum(n, 'beta', 1);
    if (alpha !== 1) y = G.mul(y, cx.g.scalar(alpha, y.dtype));
    if (c) {
      const bias = T(cx, c, n, a);
      y = G.add(y, beta === 1 ? bias : G.mul(bias, cx.g.scalar(beta, y.dtype)));
    }
    return [y];
  },
  Softmax: (cx, n, [a]) => {
    const x = T(cx, a, n);
    // Before opset 13 Softmax flattened the axes from `axis` on (default 1): the same as one axis only for the last.
    const ax = axis(n, attrInt(n, 'axis', cx.opset < 13 ? 1 : -1), x.rank);
    if (cx.opset < 13 && ax !== x.rank - 1) throw unsupported(n, `opset-${cx.opset} Softmax over axes ${ax}.. of a rank-${x.rank} tensor (flattened form); re-export with opset_version=17`);
    return [G.softmax(x, ax)];
  },
  /** gelu(x)·W + b as fuse-gelu-linear.ts found it: the composite where dtype and shapes allow, else the original ops. */
  [GELU_LINEAR_OP]: (cx, n, [a, wv, bv]) => {
    const x = T(cx, a, n);
    const w = withLora(cx, n, T(cx, wv, n, a));
    const b = T(cx, bv, n, a);
    if (x.dtype === 'float32' && w.rank === 2 && b.rank === 1 && x.shape[x.rank - 1] === w.shape[0] && b.shape[0] === w.shape[1]) return [G.geluLinear(x, w, b)];
    return [G.add(G.matmul(x.dtype === 'float32' ? G.geluFused(x) : G.gelu(x), w), b)];
  },
  /** The attention core as fuse-attention.ts found it: the composite where its shapes allow, else the original chain. */
  [ATTENTION_OP]: (cx, n, [a, b, c]) => {
    const [q, k, v] = [T(cx, a, n), T(cx, b, n, a), T(cx, c, n, a)];
    const scale = attrNum(n, 'scale', 1);
    const r = q.rank;
    const ax = axis(n, attrInt(n, 'axis', cx.opset < 13 ? 1 : -1), r);
    const lead = q.shape.slice(0, -2);
    const sameLead = (t: Tensor): boolean => t.rank === r && t.shape.slice(0, -2).every((d, i) => d === lead[i]);
    if (r >= 3 && ax === r - 1 && sameLead(k) && sameLead(v) && q.shape[r - 1] === k.shape[r - 1] && k.shape[r - 2] === v.shape[r - 2]) {
      return [G.attention(q, k, v, scale)];
    }
    if (cx.opset < 13 && ax !== r - 1) throw unsupported(n, `opset-${cx.opset} Softmax over axes ${ax}.. of a rank-${r} tensor (flattened form); re-export with opset_version=17`);
    const perm = k.shape.map((_, i) => (i === k.rank - 2 ? k.rank - 1 : i === k.rank - 1 ? k.rank - 2 : i));
    let s = G.matmul(q, G.transpose(k, perm));
    if (scale !== 1) s = G.mul(s, cx.g.scalar(scale, s.dtype));
    return [G.matmul(G.softmax(s, ax), v)];
  },
  LayerNormalization: (cx, n, [a, s, b]) => {
    const x = T(cx, a, n);
    if (axis(n, attrInt(n, 'axis', -1), x.rank) !== x.rank - 1) throw unsupported(n, `LayerNormalization over axis ${String(n.attrs.axis)}: only the last axis is supported`);
    if (n.outputs.slice(1).some(Boolean)) throw unsupported(n, 'the Mean / InvStdDev outputs are not supported');
    const scale = T(cx, s, n, a);
    const bias = b ? T(cx, b, n, a) : G.zerosLike(scale);
    return [G.layerNormC(x, scale, bias, attrNum(n, 'epsilon', 1e-5))];
  },
  /**
   * LayerNorm and the Linears reading it as fuse-layernorm-linear.ts found them: the composite (each map's LoRA
   * merged into its weight under the MatMul's name) where shapes and dtypes allow, else the original ops.
   */
  [LAYERNORM_LINEAR_OP]: (cx, n, ins) => {
    const k = attrInt(n, 'count', 0);
    const names = fusedMatMuls(n);
    if (k < 1 || names.length !== k || ins.length !== 3 + 2 * k) throw new OnnxImportError('malformed', `${LAYERNORM_LINEAR_OP} needs x, scale, bias and ${k} (weight, bias) pairs named by its matmuls`, where(n));
    const [a, s, b] = ins;
    const x = T(cx, a, n);
    const [scale, bias] = [T(cx, s, n, a), T(cx, b, n, a)];
    const raw = names.map((_, j) => T(cx, ins[3 + 2 * j], n, a));
    const bs = names.map((_, j) => T(cx, ins[4 + 2 * j], n, a));
    const d = x.shape[x.rank - 1];
    const float = (t: Tensor): boolean => t.dtype === x.dtype;
    const fits = isFloat32or64(x) && x.rank >= 2 && axis(n, attrInt(n, 'axis', -1), x.rank) === x.rank - 1
      && [scale, bias].every((p) => float(p) && p.rank === 1 && p.shape[0] === d)
      && raw.every((w, j) => float(w) && float(bs[j]) && w.rank === 2 && w.shape[0] === d && bs[j].rank === 1 && bs[j].shape[0] === w.shape[1]);
    if (fits) return G.layerNormLinear(x, scale, bias, raw.map((w, j) => ({ weight: withLora(cx, names[j], w), bias: bs[j] })), attrNum(n, 'epsilon', 1e-5));
    const { count: _c, matmuls: _m, ...lnAttrs } = n.attrs;
    const [y] = OPS.LayerNormalization(cx, { op: 'LayerNormalization', name: n.name, inputs: n.inputs.slice(0, 3), outputs: [n.outputs[0]], attrs: lnAttrs }, [a, s, b]);
    return names.map((mm, j) => G.add(OPS.MatMul(cx, { op: 'MatMul', name: mm, inputs: [], outputs: [], attrs: {} }, [{ t: y }, ins[3 + 2 * j]])[0], T(cx, ins[4 + 2 * j], n, a)));
  },
  BatchNormalization: (cx, n, [a, s, b, m, v]) => {
    if (attrInt(n, 'training_mode', 0) !== 0 || n.outputs.slice(1).some(Boolean)) throw unsupported(n, 'training-mode BatchNormalization; export the model in eval mode (model.eval())');
    return [G.batchNormInference(T(cx, a, n), T(cx, s, n, a), T(cx, b, n, a), T(cx, m, n, a), T(cx, v, n, a), attrNum(n, 'epsilon', 1e-5))];
  },
  Conv: (cx, n, [a, w, b]) => {
    const x = T(cx, a, n);
    const wt = T(cx, w, n, a);
    if (x.rank !== 4) throw unsupported(n, `only 2-D convolution is supported, got a rank-${x.rank} input`);
    const strides = (n.attrs.strides as number[] | undefined) ?? [1, 1];
    const dilations = (n.attrs.dilations as number[] | undefined) ?? [1, 1];
    const pads = spatialPads(n, x, wt.shape.slice(2), strides, dilations);
    return [G.conv2d(x, wt, b ? T(cx, b, n, a) : null, { strides, dilations, pads, group: attrInt(n, 'group', 1) })];
  },
  MaxPool: (cx, n, [a]) => {
    const x = T(cx, a, n);
    pool2(n, x);
    if (attrInt(n, 'ceil_mode', 0) !== 0 || attrInt(n, 'storage_order', 0) !== 0 || n.outputs[1]) throw unsupported(n, 'ceil_mode, storage_order and the Indices output are not supported');
    const kernel = n.attrs.kernel_shape as number[];
    const strides = (n.attrs.strides as number[] | undefined) ?? [1, 1];
    const dilations = (n.attrs.dilations as number[] | undefined) ?? [1, 1];
    return [G.maxPool2d(x, kernel, { strides, dilations, pads: spatialPads(n, x, kernel, strides, dilations) })];
  },
  /**
   * AveragePool as a depthwise Conv with a constant 1/(kh·kw) kernel (Conv's VJP and gradcheck cover it). Padding is
   * exact only when the padded zeros count (count_include_pad=1) or there is none; ceil_mode is not supported.
   */
  AveragePool: (cx, n, [a]) => {
    const x = T(cx, a, n);
    pool2(n, x);
    if (!isFloat32or64(x)) throw unsupported(n, `AveragePool of a ${x.dtype} tensor`);
    const kernel = n.attrs.kernel_shape as number[];
    if (!Array.isArray(kernel) || kernel.length !== 2) throw unsupported(n, 'AveragePool needs a 2-D kernel_shape');
    if (attrInt(n, 'ceil_mode', 0) !== 0) throw unsupported(n, 'ceil_mode=1 AveragePool; re-export with ceil_mode=False');
    const strides = (n.attrs.strides as number[] | undefined) ?? [1, 1];
    const dilations = (n.attrs.dilations as number[] | undefined) ?? [1, 1];
    const pads = spatialPads(n, x, kernel, strides, dilations);
    if (pads.some((p) => p > 0) && attrInt(n, 'count_include_pad', 0) !== 1) throw unsupported(n, 'AveragePool with padding and count_include_pad=0 (the border divisor changes per position); re-export with count_include_pad=True or without padding');
    const C = x.shape[1];
    const k = kernel[0] * kernel[1];
    const w = cx.g.constant(new Array(C * k).fill(1 / k), [C, 1, kernel[0], kernel[1]], x.dtype);
    return [G.conv2d(x, w, null, { strides, pads, dilations, group: C })];
  },
  GlobalAveragePool: (cx, n, [a]) => [G.globalAveragePool(T(cx, a, n))],
  GlobalMaxPool: (cx, n, [a]) => {
    const x = T(cx, a, n);
    return [G.reduceMax(x, x.shape.slice(2).map((_, i) => i + 2), true)];
  },
  /** Resize with constant scales or sizes: nearest as a Gather, linear as a MatMul per axis (src/model/onnx/resize.ts). */
  Resize: (cx, n, ins) => {
    const x = T(cx, ins[0], n);
    if (!isFloat32or64(x)) throw unsupported(n, `Resize of a ${x.dtype} tensor`);
    // opset 10: (X, scales); opset 11+: (X, roi, scales, sizes), absent ones empty.
    const [scalesV, sizesV] = ins.length === 2 ? [ins[1], undefined] : [ins[2], ins[3]];
    const nums = (v: Value | undefined, what: string): number[] => (v ? ints(n, v, what) : []);
    let plan;
    try {
      plan = planResize(x.shape, nums(scalesV, 'Resize scales'), nums(sizesV, 'Resize sizes'), n.attrs as ResizeAttrs);
    } catch (err) {
      throw unsupported(n, (err as Error).message);
    }
    return [resizeTensor(x, plan)];
  },
  Flatten: (cx, n, [a]) => [G.flatten(T(cx, a, n), attrInt(n, 'axis', 1))],
  Reshape: (cx, n, [a, s]) => {
    const x = T(cx, a, n);
    const want = ints(n, s, 'shape');
    if (n.attrs.allowzero && want.includes(0)) throw unsupported(n, 'allowzero with a zero dimension');
    return [G.reshape(x, want)];
  },
  Transpose: (cx, n, [a]) => {
    const x = T(cx, a, n);
    return [G.transpose(x, (n.attrs.perm as number[] | undefined) ?? x.shape.map((_, i) => x.rank - 1 - i))];
  },
  Unsqueeze: (cx, n, [a, ax]) => {
    const x = T(cx, a, n);
    const axes = ax ? ints(n, ax, 'axes') : (n.attrs.axes as number[]);
    return [G.unsqueeze(x, axes.map((v) => axis(n, v, x.rank + axes.length)).sort((p, q) => p - q))];
  },
  Squeeze: (cx, n, [a, ax]) => {
    const x = T(cx, a, n);
    const axes = ax ? ints(n, ax, 'axes') : ((n.attrs.axes as number[] | undefined) ?? x.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0));
    return [G.squeeze(x, axes.map((v) => axis(n, v, x.rank)))];
  },
  Concat: (cx, n, ins) => {
    const like = ins.find((v) => v && 't' in v);
    const ts = ins.map((v) => T(cx, v, n, like));
    return [G.concat(ts, axis(n, n.attrs.axis as number, ts[0].rank))];
  },
  /** Split into consecutive parts: sizes from the input (opset 13+), the `split` attribute (< 13), `num_outputs` (18) or equal. */
  Split: (cx, n, [a, sp]) => {
    const x = T(cx, a, n);
    const ax = axis(n, attrInt(n, 'axis', 0), x.rank);
    const d = x.shape[ax];
    const parts = n.outputs.length;
    let sizes: number[];
    if (sp) sizes = ints(n, sp, 'split');
    else if (Array.isArray(n.attrs.split)) sizes = n.attrs.split as number[];
    else {
      const k = attrInt(n, 'num_outputs', parts);
      if (k !== parts) throw new OnnxImportError('malformed', `num_outputs ${k} but ${parts} outputs`, where(n));
      const each = Math.ceil(d / k);
      sizes = Array.from({ length: k }, (_, i) => Math.min(each, d - i * each));
    }
    if (sizes.length !== parts || sizes.some((v) => !Number.isInteger(v) || v < 1) || sizes.reduce((p, v) => p + v, 0) !== d) {
      throw unsupported(n, `Split of axis ${ax} (size ${d}) into [${sizes.join(',')}] for ${parts} outputs: sizes must be positive, one per output, and sum to the axis size`);
    }
    return G.split(x, sizes, ax);
  },
  Slice: (cx, n, [a, st, en, ax, sp]) => {
    const x = T(cx, a, n);
    // Opset < 10: starts, ends and axes are attributes.
    const at = (k: string): number[] | undefined => n.attrs[k] as number[] | undefined;
    const starts = st ? ints(n, st, 'starts') : at('starts') ?? ints(n, st, 'starts');
    const ends = en ? ints(n, en, 'ends') : at('ends') ?? ints(n, en, 'ends');
    const { start, end } = sliceRanges(n, x.shape, starts, ends, ax ? ints(n, ax, 'axes') : at('axes'), sp ? ints(n, sp, 'steps') : undefined);
    const axes = x.shape.map((_, i) => i).filter((i) => start[i] !== 0 || end[i] !== x.shape[i]);
    if (axes.length === 0) return [x];
    return [G.slice(x, axes.map((i) => start[i]), axes.map((i) => end[i]), axes)];
  },
  Gather: (cx, n, [a, i]) => {
    const x = T(cx, a, n);
    const ax = axis(n, attrInt(n, 'axis', 0), x.rank);
    const idx = i && 'c' in i ? { c: { ...i.c, dtype: 'int64' as const, data: i.c.data.map((k) => (k < 0 ? k + x.shape[ax] : k)) } } : i;
    // A constant scalar index (`qkv[0]`, `x[:, 0]`) is a Slice + Reshape, whose VJP is a Pad, not a scatter.
    if (idx && 'c' in idx && idx.c.shape.length === 0) {
      const k = idx.c.data[0];
      return [G.reshape(G.slice(x, [k], [k + 1], [ax]), x.shape.filter((_, d) => d !== ax))];
    }
    return [G.gather(x, T(cx, idx, n), ax)];
  },
  Expand: (cx, n, [a, s]) => {
    const x = T(cx, a, n);
    const shape = broadcast(x.shape, ints(n, s, 'shape'));
    if (!shape) throw new OnnxImportError('malformed', 'Expand shapes do not broadcast', where(n));
    return [G.expand(x, shape)];
  },
  ReduceMean: (cx, n, [a, ax]) => reduce(cx, n, a, ax, G.reduceMean),
  ReduceSum: (cx, n, [a, ax]) => reduce(cx, n, a, ax, G.reduceSum),
  ReduceMax: (cx, n, [a, ax]) => reduce(cx, n, a, ax, G.reduceMax),
};

function reduce(cx: BuildContext, n: IrNode, a: Value | undefined, ax: Value | undefined, f: (x: Tensor, axes: number[], keep: boolean) => Tensor): Tensor[] {
  const x = T(cx, a, n);
  const axes = ax ? ints(n, ax, 'axes') : (n.attrs.axes as number[] | undefined);
  const keep = attrInt(n, 'keepdims', 1) === 1;
  if (!axes || axes.length === 0) {
    if (attrInt(n, 'noop_with_empty_axes', 0)) return [x];
    return [f(x, x.shape.map((_, i) => i), keep)];
  }
  return [f(x, axes.map((v) => axis(n, v, x.rank)), keep)];
}

/** Op types the importer knows (folded or mapped). */
export function knownOps(): string[] {
  return [...new Set([...Object.keys(OPS), ...Object.keys(FOLD), 'Constant', 'Shape', 'Size'])].sort();
}

/** Evaluate one node into the context. */
export function runNode(cx: BuildContext, n: IrNode): void {
  let outs: Value[];
  if (n.op === 'Constant') outs = [{ c: constantNode(n) }];
  else {
    const ins = n.inputs.map((x) => (x ? valueOf(cx, x, n) : undefined));
    if (n.op === 'Shape' || n.op === 'Size') {
      const v = ins[0];
      if (!v) throw new OnnxImportError('malformed', 'missing input', where(n));
      const shape = 't' in v ? v.t.shape : v.c.shape;
      outs = [{ c: n.op === 'Shape' ? shapeNode(n, shape) : { dtype: 'int64', shape: [], data: [shape.reduce((p, d) => p * d, 1)] } }];
    } else if (FOLD[n.op] && ins.every(isConst)) {
      outs = FOLD[n.op](n, ins.map((v) => v?.c)).map((c) => ({ c }));
    } else {
      const h = OPS[n.op];
      if (!h) {
        throw new OnnxImportError('unsupported-op', `op '${n.op}' has no mapping onto fmfl's op table; re-export the model without it (e.g. a standard layer instead of a custom one), or add it to src/graph with its VJP and gradcheck and map it in src/model/onnx/build.ts (known: ${knownOps().join(', ')})`, where(n));
      }
      try {
        outs = h(cx, n, ins).map((t) => ({ t }));
      } catch (err) {
        if (err instanceof OnnxImportError) throw err;
        throw new OnnxImportError('unsupported-form', (err as Error).message, where(n));
      }
    }
  }
  n.outputs.forEach((o, i) => {
    if (o && outs[i]) cx.env.set(o, outs[i]);
  });
}

/**
 * The nodes needed to compute `targets`, in graph order, not looking through `stops` (values already known) or
 * through names that are weights or constants.
 */
export function nodesFor(ir: ImportedGraph, targets: readonly string[], stops: ReadonlySet<string> = new Set()): IrNode[] {
  const producer = new Map<string, number>();
  ir.nodes.forEach((n, i) => n.outputs.forEach((o) => o && producer.set(o, i)));
  const need = new Set<number>();
  const stack = [...targets];
  const seen = new Set<string>();
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v) || stops.has(v)) continue;
    seen.add(v);
    const i = producer.get(v);
    if (i === undefined || need.has(i)) continue;
    need.add(i);
    for (const x of ir.nodes[i].inputs) if (x) stack.push(x);
  }
  return [...need].sort((a, b) => a - b).map((i) => ir.nodes[i]);
}
