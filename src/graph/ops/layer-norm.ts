/**
 * The LayerNorm forms (LayerNorm, LayerNormC, LayerNormLinear), sharing their parameter checks, ONNX chain and VJP.
 */
import { GraphError, shapeEq, type Tensor, type Attrs } from '../graph.ts';
import { type Emitter, type TypeInfo, type OpDef } from './registry.ts';
import { sameFloat } from './shape-rules.ts';
import { weightGrad, flatRows } from './grad-helpers.ts';
import { add, sub, mul, div, where, matmulT, reduceSum, reduceMean, attention, reshape, slice, layerNormComposed } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

/**
 * LayerNormalization over the last axis (opset 17), returning [y, mean, invStdDev]. The VJP reuses the saved
 * statistics: with xh = (x - mean) * inv and gy = g * gamma,
 * dx = inv * (gy - mean(gy) - xh * mean(gy * xh)), dgamma = sum(g * xh), dbeta = sum(g).
 */
ops.push({
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

/**
 * LayerNorm over the last axis as a composite with its own VJP. The forward is emitted as the primitive chain
 * ReduceMean, Sub, Mul, ReduceMean, Add(eps), Sqrt, Div, Mul(w), Add(b), which onnxruntime 1.29 runs 2-3x
 * faster than its LayerNormalization kernel; outputs [y, xh, std]. The VJP is the compact closed form
 * (about 10 ops instead of ~25 from differentiating the chain):
 * with gy = g * w: dx = (gy - mean(gy) - xh * mean(gy * xh)) / std, dw = sum(g * xh), db = sum(g).
 */
ops.push({
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
ops.push({
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
