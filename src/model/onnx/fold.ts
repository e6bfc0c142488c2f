/**
 * Constant folding of the shape plumbing exporters emit (Shape, Gather on shapes, Unsqueeze, Concat, Cast,
 * ConstantOfShape, Equal/Where over constants, integer arithmetic, Slice, Range, ...): with the batch fixed, every
 * such value is a constant computed here in plain JS, so the fmfl graph keeps only the tensor ops.
 */
import { OnnxImportError } from './read.ts';
import type { ConstDType, ConstValue, IrNode } from './ir.ts';

export type FoldFn = (n: IrNode, ins: (ConstValue | undefined)[]) => ConstValue[];

const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
const isInt = (d: ConstDType): boolean => d === 'int64' || d === 'int32' || d === 'bool';

function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let k = shape.length - 1; k >= 0; k--) {
    idx[k] = i % shape[k];
    i = Math.floor(i / shape[k]);
  }
  return idx;
}

/** numpy broadcasting of two shapes; null when they do not broadcast. */
export function broadcast(a: readonly number[], b: readonly number[]): number[] | null {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Read element `idx` (of the broadcast shape `out`) from `v`. */
function at(v: ConstValue, idx: readonly number[], st: number[]): number {
  const off = idx.length - v.shape.length;
  let p = 0;
  for (let k = 0; k < v.shape.length; k++) p += (v.shape[k] === 1 ? 0 : idx[k + off]) * st[k];
  return v.data[p];
}

function mapN(n: IrNode, vs: ConstValue[], dtype: ConstDType, f: (...x: number[]) => number): ConstValue {
  let shape: number[] = [];
  for (const v of vs) {
    const b = broadcast(shape, v.shape);
    if (!b) throw new OnnxImportError('malformed', `shapes ${vs.map((x) => `[${x.shape}]`).join(', ')} do not broadcast`, { op: n.op, node: n.name });
    shape = b;
  }
  const sts = vs.map((v) => stridesOf(v.shape));
  const total = size(shape);
  const data = new Array<number>(total);
  for (let i = 0; i < total; i++) {
    const idx = unravel(i, shape);
    data[i] = f(...vs.map((v, k) => at(v, idx, sts[k])));
  }
  return { dtype, shape, data };
}

function need(n: IrNode, v: ConstValue | undefined, what: string): ConstValue {
  if (!v) throw new OnnxImportError('malformed', `missing ${what}`, { op: n.op, node: n.name });
  return v;
}

const normAxis = (n: IrNode, a: number, rank: number): number => {
  const r = a < 0 ? a + rank : a;
  if (r < 0 || r >= rank) throw new OnnxImportError('malformed', `axis ${a} out of range for rank ${rank}`, { op: n.op, node: n.name });
  return r;
};

function binary(f: (a: number, b: number) => number, out?: ConstDType): FoldFn {
  return (n, [a, b]) => {
    const x = need(n, a, 'input A');
    const dt = out ?? x.dtype;
    const g = isInt(x.dtype) && !out ? (p: number, q: number) => Math.trunc(f(p, q)) : f;
    return [mapN(n, [x, need(n, b, 'input B')], dt, g)];
  };
}

function unary(f: (a: number) => number): FoldFn {
  return (n, [a]) => [mapN(n, [need(n, a, 'input')], need(n, a, 'input').dtype, f)];
}

function axesOf(n: IrNode, ins: (ConstValue | undefined)[]): number[] | undefined {
  return ins[1] ? ins[1].data : (n.attrs.axes as number[] | undefined);
}

/** Slice ranges per axis, normalized as ONNX specifies (negative values, clamping). Steps must be 1. */
export function sliceRanges(n: IrNode, shape: readonly number[], starts: number[], ends: number[], axes?: number[], steps?: number[]): { start: number[]; end: number[] } {
  const start = shape.map(() => 0);
  const end = [...shape];
  (axes ?? starts.map((_, i) => i)).forEach((a0, i) => {
    const a = normAxis(n, a0, shape.length);
    if (steps && steps[i] !== 1) throw new OnnxImportError('unsupported-form', `step ${steps[i]} is not supported (only 1)`, { op: n.op, node: n.name });
    const d = shape[a];
    const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + d : v, 0), d);
    start[a] = clamp(starts[i]);
    end[a] = Math.max(start[a], clamp(ends[i]));
  });
  return { start, end };
}

function gather(n: IrNode, x: ConstValue, idx: ConstValue): ConstValue {
  const axis = normAxis(n, (n.attrs.axis as number | undefined) ?? 0, x.shape.length);
  const shape = [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)];
  const st = stridesOf(x.shape);
  const data: number[] = [];
  for (let i = 0; i < size(shape); i++) {
    const o = unravel(i, shape);
    const pre = o.slice(0, axis);
    const k = idx.shape.length === 0 ? idx.data[0] : idx.data[o.slice(axis, axis + idx.shape.length).reduce((p, v, j) => p * idx.shape[j] + v, 0)];
    const j = k < 0 ? k + x.shape[axis] : k;
    if (j < 0 || j >= x.shape[axis]) throw new OnnxImportError('malformed', `index ${k} out of range`, { op: n.op, node: n.name });
    const post = o.slice(axis + idx.shape.length);
    data.push(x.data[[...pre, j, ...post].reduce((p, v, q) => p + v * st[q], 0)]);
  }
  return { dtype: x.dtype, shape, data };
}

const DTYPES: Record<number, ConstDType> = { 1: 'float32', 6: 'int32', 7: 'int64', 9: 'bool', 11: 'float64' };

/** The folders, by ONNX op type. Each takes constant inputs (absent optional inputs as undefined). */
export const FOLD: Readonly<Record<string, FoldFn>> = {
  Identity: (n, [a]) => [need(n, a, 'input')],
  Add: binary((a, b) => a + b),
  Sub: binary((a, b) => a - b),
  Mul: binary((a, b) => a * b),
  Div: binary((a, b) => a / b),
  Pow: binary((a, b) => a ** b),
  Mod: binary((a, b) => a - b * Math.floor(a / b)),
  Max: binary((a, b) => Math.max(a, b)),
  Min: binary((a, b) => Math.min(a, b)),
  Equal: binary((a, b) => Number(a === b), 'bool'),
  Greater: binary((a, b) => Number(a > b), 'bool'),
  Less: binary((a, b) => Number(a < b), 'bool'),
  And: binary((a, b) => Number(Boolean(a) && Boolean(b)), 'bool'),
  Or: binary((a, b) => Number(Boolean(a) || Boolean(b)), 'bool'),
  Not: unary((a) => Number(!a)),
  Neg: unary((a) => -a),
  Abs: unary(Math.abs),
  Floor: unary(Math.floor),
  Ceil: unary(Math.ceil),
  Sqrt: unary(Math.sqrt),
  Cast: (n, [a]) => {
    const x = need(n, a, 'input');
    const to = DTYPES[n.attrs.to as number];
    if (!to) throw new OnnxImportError('unsupported-form', `cast to type ${String(n.attrs.to)} is not supported`, { op: n.op, node: n.name });
    return [{ dtype: to, shape: x.shape, data: x.data.map((v) => (to === 'bool' ? Number(v !== 0) : isInt(to) ? Math.trunc(v) : v)) }];
  },
  Where: (n, [c, a, b]) => [mapN(n, [need(n, c, 'condition'), need(n, a, 'X'), need(n, b, 'Y')], need(n, a, 'X').dtype, (p, x, y) => (p ? x : y))],
  ConstantOfShape: (n, [s]) => {
    const shape = need(n, s, 'shape').data;
    const v = (n.attrs.value as { tensor: ConstValue } | undefined)?.tensor ?? { dtype: 'float32', shape: [1], data: [0] };
    return [{ dtype: v.dtype, shape, data: new Array<number>(size(shape)).fill(v.data[0]) }];
  },
  Gather: (n, [x, i]) => [gather(n, need(n, x, 'data'), need(n, i, 'indices'))],
  Unsqueeze: (n, ins) => {
    const x = need(n, ins[0], 'input');
    const axes = axesOf(n, ins) ?? [];
    const rank = x.shape.length + axes.length;
    const norm = axes.map((a) => normAxis(n, a, rank)).sort((p, q) => p - q);
    const shape = [...x.shape];
    for (const a of norm) shape.splice(a, 0, 1);
    return [{ ...x, shape }];
  },
  Squeeze: (n, ins) => {
    const x = need(n, ins[0], 'input');
    const axes = (axesOf(n, ins) ?? x.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0)).map((a) => normAxis(n, a, x.shape.length));
    return [{ ...x, shape: x.shape.filter((_, i) => !axes.includes(i)) }];
  },
  Concat: (n, ins) => {
    const vs = ins.map((v, i) => need(n, v, `input ${i}`));
    const axis = normAxis(n, n.attrs.axis as number, vs[0].shape.length);
    if (vs[0].shape.length !== 1 || axis !== 0) {
      // Rare for shape values: concatenate generally through the outer/inner split.
      const outer = size(vs[0].shape.slice(0, axis));
      const data: number[] = [];
      for (let o = 0; o < outer; o++) for (const v of vs) { const inner = size(v.shape.slice(axis)); data.push(...v.data.slice(o * inner, (o + 1) * inner)); }
      const shape = [...vs[0].shape];
      shape[axis] = vs.reduce((p, v) => p + v.shape[axis], 0);
      return [{ dtype: vs[0].dtype, shape, data }];
    }
    return [{ dtype: vs[0].dtype, shape: [vs.reduce((p, v) => p + v.data.length, 0)], data: vs.flatMap((v) => v.data) }];
  },
  Reshape: (n, [x, s]) => {
    const v = need(n, x, 'data');
    const want = need(n, s, 'shape').data.map((d, i) => (d === 0 && !n.attrs.allowzero ? v.shape[i] : d));
    const known = want.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
    const shape = want.map((d) => (d === -1 ? v.data.length / known : d));
    if (size(shape) !== v.data.length) throw new OnnxImportError('malformed', `cannot reshape [${v.shape}] to [${want}]`, { op: n.op, node: n.name });
    return [{ ...v, shape }];
  },
  Expand: (n, [x, s]) => {
    const v = need(n, x, 'input');
    const shape = broadcast(v.shape, need(n, s, 'shape').data);
    if (!shape) throw new OnnxImportError('malformed', 'shapes do not broadcast', { op: n.op, node: n.name });
    return [mapN(n, [v, { dtype: v.dtype, shape, data: new Array<number>(size(shape)).fill(0) }], v.dtype, (a) => a)];
  },
  Slice: (n, [x, st, en, ax, sp]) => {
    const v = need(n, x, 'data');
    // Opset < 10: starts, ends and axes are attributes.
    const a = (k: string): number[] | undefined => n.attrs[k] as number[] | undefined;
    const { start, end } = sliceRanges(n, v.shape, st?.data ?? a('starts') ?? need(n, st, 'starts').data, en?.data ?? a('ends') ?? need(n, en, 'ends').data, ax?.data ?? a('axes'), sp?.data);
    const shape = start.map((s, i) => end[i] - s);
    const strides = stridesOf(v.shape);
    const data: number[] = [];
    for (let i = 0; i < size(shape); i++) data.push(v.data[unravel(i, shape).reduce((p, k, a) => p + (k + start[a]) * strides[a], 0)]);
    return [{ dtype: v.dtype, shape, data }];
  },
  Range: (n, [s, l, d]) => {
    const [a, b, c] = [need(n, s, 'start').data[0], need(n, l, 'limit').data[0], need(n, d, 'delta').data[0]];
    const count = Math.max(Math.ceil((b - a) / c), 0);
    if (count > 1 << 20) throw new OnnxImportError('malformed', `range of ${count} values`, { op: n.op, node: n.name });
    return [{ dtype: need(n, s, 'start').dtype, shape: [count], data: Array.from({ length: count }, (_, i) => a + i * c) }];
  },
  Transpose: (n, [x]) => {
    const v = need(n, x, 'input');
    const perm = (n.attrs.perm as number[] | undefined) ?? v.shape.map((_, i) => v.shape.length - 1 - i);
    const shape = perm.map((p) => v.shape[p]);
    const st = stridesOf(v.shape);
    const data: number[] = [];
    for (let i = 0; i < size(shape); i++) data.push(v.data[unravel(i, shape).reduce((p, k, a) => p + k * st[perm[a]], 0)]);
    return [{ dtype: v.dtype, shape, data }];
  },
  ReduceProd: (n, ins) => {
    const v = need(n, ins[0], 'input');
    if (axesOf(n, ins) || n.attrs.keepdims === 0) {
      if (v.shape.length !== 1) throw new OnnxImportError('unsupported-form', 'ReduceProd over constants folds 1-D values only', { op: n.op, node: n.name });
    }
    const keep = n.attrs.keepdims !== 0;
    return [{ dtype: v.dtype, shape: keep ? v.shape.map(() => 1) : [], data: [v.data.reduce((a, b) => a * b, 1)] }];
  },
};

/** The value of a Constant node (value, value_float(s), value_int(s)). */
export function constantNode(n: IrNode): ConstValue {
  const a = n.attrs;
  if (a.value && typeof a.value === 'object' && 'tensor' in a.value) return a.value.tensor;
  if (typeof a.value_float === 'number') return { dtype: 'float32', shape: [], data: [a.value_float] };
  if (Array.isArray(a.value_floats)) return { dtype: 'float32', shape: [a.value_floats.length], data: a.value_floats };
  if (typeof a.value_int === 'number') return { dtype: 'int64', shape: [], data: [a.value_int] };
  if (Array.isArray(a.value_ints)) return { dtype: 'int64', shape: [a.value_ints.length], data: a.value_ints };
  throw new OnnxImportError('unsupported-form', 'Constant without a tensor, float(s) or int(s) value', { op: n.op, node: n.name });
}

/** Shape (with opset-15 start / end) of a value with a known shape. */
export function shapeNode(n: IrNode, shape: readonly number[]): ConstValue {
  const r = shape.length;
  const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + r : v, 0), r);
  const s = clamp((n.attrs.start as number | undefined) ?? 0);
  const e = clamp((n.attrs.end as number | undefined) ?? r);
  const dims = shape.slice(s, Math.max(s, e));
  return { dtype: 'int64', shape: [dims.length], data: [...dims] };
}
