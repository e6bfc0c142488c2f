/**
 * Exact GELU composites: GeluFused and GeluLinear (sharing the GELU derivative helpers).
 */
import { GraphError, type Tensor } from '../graph.ts';
import { type OpDef } from './registry.ts';
import { sameFloat } from './shape-rules.ts';
import { weightGrad, flatRows } from './grad-helpers.ts';
import { add, sub, mul, where, exp, log, erf, matmulT, reduceSum, reshape, slice, gelu } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

/** Exact GELU as ORT's contrib op com.microsoft.Gelu (x * Phi(x)); VJP: Phi(x) + x * phi(x). */
ops.push({
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
ops.push({
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
