/**
 * Gradient checks: every differentiable op's VJP against central finite differences, all evaluated through
 * onnxruntime-node. float64 graphs where onnxruntime has a float64 kernel (tolerance 1e-6 relative), float32
 * otherwise (Erf, fused LayerNorm and Gelu: eps 1e-2, tolerance 5e-3 relative).
 */
import test from 'ava';
import * as G from '../../src/graph/index.ts';
import { gradcheck, type InputSpec } from './gradcheck-helpers.ts';
import { VISION_CASES } from './gradcheck-vision-cases.ts';

type Build = (...xs: G.Tensor[]) => G.Tensor;
interface Case {
  op: string;
  title: string;
  build: Build;
  inputs: InputSpec[];
  dtype?: 'float32' | 'float64';
}

const pos: [number, number] = [0.5, 2];
const CASES: Case[] = [
  { op: 'Add', title: 'same shape', build: G.add, inputs: [{ shape: [3, 4] }, { shape: [3, 4] }] },
  { op: 'Add', title: 'broadcast bias [4] over [2,3,4]', build: G.add, inputs: [{ shape: [2, 3, 4] }, { shape: [4] }] },
  { op: 'Add', title: 'broadcast [2,1,4] + [3,1]', build: G.add, inputs: [{ shape: [2, 1, 4] }, { shape: [3, 1] }] },
  { op: 'Sub', title: 'broadcast [3,4] - [3,1]', build: G.sub, inputs: [{ shape: [3, 4] }, { shape: [3, 1] }] },
  { op: 'Mul', title: 'broadcast [2,3,4] * [1,3,1]', build: G.mul, inputs: [{ shape: [2, 3, 4] }, { shape: [1, 3, 1] }] },
  { op: 'Div', title: 'broadcast [2,3] / [3]', build: G.div, inputs: [{ shape: [2, 3] }, { shape: [3], range: pos }] },
  { op: 'Pow', title: 'x^p, both tensors', build: G.pow, inputs: [{ shape: [2, 3], range: pos }, { shape: [3], range: [0.5, 3] }] },
  { op: 'Neg', title: 'neg', build: G.neg, inputs: [{ shape: [5] }] },
  { op: 'Exp', title: 'exp', build: G.exp, inputs: [{ shape: [2, 3] }] },
  { op: 'Log', title: 'log', build: G.log, inputs: [{ shape: [2, 3], range: pos }] },
  { op: 'Sqrt', title: 'sqrt', build: G.sqrt, inputs: [{ shape: [2, 3], range: pos }] },
  { op: 'Tanh', title: 'tanh', build: G.tanh, inputs: [{ shape: [2, 3] }] },
  { op: 'Sigmoid', title: 'sigmoid', build: G.sigmoid, inputs: [{ shape: [2, 3] }] },
  { op: 'Erf', title: 'erf (float32 kernel only)', build: G.erf, inputs: [{ shape: [3, 4] }], dtype: 'float32' },
  { op: 'Relu', title: 'relu', build: G.relu, inputs: [{ shape: [4, 5] }] },
  { op: 'Identity', title: 'identity', build: G.identity, inputs: [{ shape: [3] }] },
  { op: 'Cast', title: 'float32 -> float64 -> float32', build: (x) => G.cast(G.mul(G.cast(x, 'float64'), x.graph.scalar(3, 'float64')), 'float32'), inputs: [{ shape: [3] }], dtype: 'float32' },
  { op: 'Where', title: 'where(x > 0, x*y, y) broadcast', build: (x, y) => G.where(G.greater(x, x.graph.scalar(0, 'float64')), G.mul(x, y), G.expand(y, [2, 3])), inputs: [{ shape: [2, 3] }, { shape: [3] }] },
  { op: 'MatMul', title: '2-D', build: G.matmul, inputs: [{ shape: [3, 4] }, { shape: [4, 5] }] },
  { op: 'MatMul', title: 'batched [2,3,4,5] x [2,3,5,2]', build: G.matmul, inputs: [{ shape: [2, 3, 4, 5] }, { shape: [2, 3, 5, 2] }] },
  { op: 'MatMul', title: 'weight gradient over 2,048 rows (four-chunk reduction) [4,512,3] x [3,2]', build: G.matmul, inputs: [{ shape: [4, 512, 3] }, { shape: [3, 2] }] },
  { op: 'MatMul', title: 'activation [2,3,4] x weight [4,5]', build: G.matmul, inputs: [{ shape: [2, 3, 4] }, { shape: [4, 5] }] },
  { op: 'MatMul', title: 'broadcast batch [2,1,3,4] x [3,4,2]', build: G.matmul, inputs: [{ shape: [2, 1, 3, 4] }, { shape: [3, 4, 2] }] },
  { op: 'MatMulT', title: 'FusedMatMul A·Bᵀ·α batched [2,3,4,5] x [2,3,6,5]', build: (a, b) => G.matmulT(a, b, { transB: true, alpha: 0.5 }), inputs: [{ shape: [2, 3, 4, 5] }, { shape: [2, 3, 6, 5] }], dtype: 'float32' },
  { op: 'Attention', title: 'softmax(s·q·kᵀ)·v, heads [2,3,4,5] / [2,3,6,5] / [2,3,6,3]', build: (q, k, v) => G.attention(q, k, v, 0.45), inputs: [{ shape: [2, 3, 4, 5] }, { shape: [2, 3, 6, 5] }, { shape: [2, 3, 6, 3] }], dtype: 'float32' },
  { op: 'Attention', title: 'o and probabilities both used, 2-D [4,3] / [5,3] / [5,2]', build: (q, k, v) => { const [o, p] = G.attentionWithProbs(q, k, v, 1.3); return G.add(G.reduceSum(o, [1], true), G.reduceSum(G.mul(p, p), [1], true)); }, inputs: [{ shape: [4, 3] }, { shape: [5, 3] }, { shape: [5, 2] }], dtype: 'float32' },
  { op: 'AddPadded', title: 'block [2,1,4] at [0,2,0] of [2,5,4]', build: (d, s) => G.addPadded(d, s, [0, 2, 0]), inputs: [{ shape: [2, 5, 4] }, { shape: [2, 1, 4] }] },
  { op: 'AddPadded', title: 'slice and whole both used: x·x + pad(slice(x)) accumulates in place', build: (x) => G.mul(G.mul(x, x), G.pad(G.mul(G.slice(x, [1, 0], [3, 2], [0, 1]), G.slice(x, [1, 0], [3, 2], [0, 1])), [1, 0], [0, 1])), inputs: [{ shape: [3, 3] }] },
  { op: 'MatMulT', title: 'FusedMatMul A·B [3,4] x [4,2]', build: (a, b) => G.matmulT(a, b, { alpha: -1.5 }), inputs: [{ shape: [3, 4] }, { shape: [4, 2] }], dtype: 'float32' },
  { op: 'MatMulT', title: 'FusedMatMul Aᵀ·B batched [2,5,3] x [2,5,4]', build: (a, b) => G.matmulT(a, b, { transA: true }), inputs: [{ shape: [2, 5, 3] }, { shape: [2, 5, 4] }], dtype: 'float32' },
  { op: 'MatMulT', title: 'FusedMatMul Aᵀ·Bᵀ [4,3] x [2,4]', build: (a, b) => G.matmulT(a, b, { transA: true, transB: true, alpha: 2 }), inputs: [{ shape: [4, 3] }, { shape: [2, 4] }], dtype: 'float32' },
  { op: 'ReduceSum', title: 'axes [0,2] keepdims', build: (x) => G.reduceSum(x, [0, 2], true), inputs: [{ shape: [2, 3, 4] }] },
  { op: 'ReduceSum', title: 'axis -1 no keepdims', build: (x) => G.reduceSum(x, [-1], false), inputs: [{ shape: [2, 3, 4] }] },
  { op: 'ReduceMean', title: 'axis 1', build: (x) => G.reduceMean(x, [1], false), inputs: [{ shape: [2, 3, 4] }] },
  { op: 'ReduceMax', title: 'axis 1 keepdims', build: (x) => G.reduceMax(x, [1], true), inputs: [{ shape: [3, 5] }] },
  { op: 'Softmax', title: 'last axis, batched', build: (x) => G.softmax(x, -1), inputs: [{ shape: [2, 3, 5] }] },
  { op: 'Softmax', title: 'axis 1', build: (x) => G.softmax(x, 1), inputs: [{ shape: [2, 4, 3] }] },
  { op: 'Reshape', title: 'with -1', build: (x) => G.reshape(x, [3, -1]), inputs: [{ shape: [2, 3, 2] }] },
  { op: 'Transpose', title: 'perm [2,0,1]', build: (x) => G.transpose(x, [2, 0, 1]), inputs: [{ shape: [2, 3, 4] }] },
  { op: 'Expand', title: '[3,1] -> [2,3,4]', build: (x) => G.expand(x, [2, 3, 4]), inputs: [{ shape: [3, 1] }] },
  { op: 'Unsqueeze', title: 'axes [0,2]', build: (x) => G.unsqueeze(x, [0, 2]), inputs: [{ shape: [2, 3] }] },
  { op: 'Squeeze', title: 'axis 1', build: (x) => G.squeeze(x, [1]), inputs: [{ shape: [2, 1, 3] }] },
  { op: 'Concat', title: 'axis 1, three operands', build: (a, b, c) => G.concat([a, b, c], 1), inputs: [{ shape: [2, 1, 3] }, { shape: [2, 2, 3] }, { shape: [2, 1, 3] }] },
  { op: 'Split', title: 'axis 1 into [1,3,1], the middle part unused (zero block in the VJP)', build: (x) => { const [a, , c] = G.split(x, [1, 3, 1], 1); return G.add(G.mul(a, a), c); }, inputs: [{ shape: [2, 5, 3] }] },
  { op: 'Split', title: 'axis 0 into three equal parts (unbind), all used', build: (x) => { const [a, b, c] = G.split(x, [1, 1, 1], 0); return G.add(G.mul(a, b), G.mul(c, c)); }, inputs: [{ shape: [3, 2, 4] }] },
  { op: 'Slice', title: 'two axes, negative end', build: (x) => G.slice(x, [1, 0], [-1, 2], [1, 2]), inputs: [{ shape: [2, 5, 3] }] },
  { op: 'Pad', title: 'pad', build: (x) => G.pad(x, [1, 0], [0, 2]), inputs: [{ shape: [2, 3] }] },
  { op: 'Gather', title: 'axis 1, repeated indices', build: (x, i) => G.gather(x, i, 1), inputs: [{ shape: [2, 5, 3] }, { shape: [4], ints: [0, 2, 2, 4] }] },
  { op: 'Gather', title: 'axis 0, 2-D indices', build: (x, i) => G.gather(x, i, 0), inputs: [{ shape: [4, 3] }, { shape: [2, 2], ints: [3, 0, 3, 1] }] },
  { op: 'GatherElements', title: 'axis 1', build: (x, i) => G.gatherElements(x, i, 1), inputs: [{ shape: [3, 4] }, { shape: [3, 2], ints: [0, 3, 1, 1, 2, 0] }] },
  { op: 'ScatterAdd', title: 'axis 0 with collisions', build: (x, i, u) => G.scatterAdd(x, i, u, 0), inputs: [{ shape: [3, 2] }, { shape: [2, 2], ints: [0, 2, 0, 1] }, { shape: [2, 2] }] },
  { op: 'LayerNorm', title: 'fused, float32, [2,3,8]', build: (x, w, b) => G.layerNorm(x, w, b), inputs: [{ shape: [2, 3, 8] }, { shape: [8] }, { shape: [8] }], dtype: 'float32' },
  { op: 'LayerNormC', title: 'composite with closed-form VJP, float64, [2,3,8]', build: (x, w, b) => G.layerNormC(x, w, b), inputs: [{ shape: [2, 3, 8] }, { shape: [8] }, { shape: [8] }] },
  { op: 'LayerNormC', title: 'composite, 2-D [4,6]', build: (x, w, b) => G.layerNormC(x, w, b), inputs: [{ shape: [4, 6] }, { shape: [6] }, { shape: [6] }] },
  // LayerNormLinear: with w and b as inputs the VJP takes the plain closed form; with them constant (as for a frozen
  // LayerNorm under LoRA) it takes the centred-weight path for x. Both outputs feed the loss.
  { op: 'LayerNormLinear', title: 'LN then two maps, every input differentiated, [2,3,8] -> [5], [4]', build: (x, w, b, w1, c1, w2, c2) => twoMaps(G.layerNormLinear(x, w, b, [{ weight: w1, bias: c1 }, { weight: w2, bias: c2 }])), inputs: [{ shape: [2, 3, 8] }, { shape: [8] }, { shape: [8] }, { shape: [8, 5] }, { shape: [5] }, { shape: [8, 4] }, { shape: [4] }] },
  { op: 'LayerNormLinear', title: 'frozen w, b (centred-weight VJP for x), 2-D [4,6] -> [3], [6]', build: (x, w1, c1, w2) => twoMaps(G.layerNormLinear(x, fixed(x, [6], 0.7), fixed(x, [6], -0.3), [{ weight: w1, bias: c1 }, { weight: w2, bias: fixed(x, [6], 0.1) }])), inputs: [{ shape: [4, 6] }, { shape: [6, 3] }, { shape: [3] }, { shape: [6, 6] }] },
  { op: 'GeluFused', title: 'com.microsoft.Gelu, float32', build: G.geluFused, inputs: [{ shape: [3, 4], range: [-3, 3] }], dtype: 'float32' },
  { op: 'GeluLinear', title: 'gelu(x)·W + c, float32, [2,3,4] -> [5]', build: (x, w, c) => G.geluLinear(x, w, c), inputs: [{ shape: [2, 3, 4], range: [-3, 3] }, { shape: [4, 5] }, { shape: [5] }], dtype: 'float32' },
  { op: 'GeluLinear', title: 'gelu(x) also used elsewhere, float32, [4,3] -> [2]', build: (x, w, c) => { const [y, a] = G.geluLinearWithAct(x, w, c); return G.add(G.reduceSum(G.mul(y, y), [1], true), G.reduceSum(G.mul(a, a), [1], true)); }, inputs: [{ shape: [4, 3], range: [-3, 3] }, { shape: [3, 2] }, { shape: [2] }], dtype: 'float32' },
  { op: 'Equal', title: 'blocks gradient', build: (x) => G.mul(x, G.cast(G.equal(x, x), 'float64')), inputs: [{ shape: [3] }] },
  { op: 'Greater', title: 'blocks gradient', build: (x) => G.mul(x, G.cast(G.greater(x, x.graph.scalar(0, 'float64')), 'float64')), inputs: [{ shape: [4] }] },
  { op: 'Less', title: 'blocks gradient', build: (x) => G.mul(x, G.cast(G.less(x, x.graph.scalar(0, 'float64')), 'float64')), inputs: [{ shape: [4] }] },
  // Composites built from the primitives above.
  { op: 'composite', title: 'softmax cross-entropy over integer labels', build: (x, l) => G.softmaxCrossEntropy(x, l), inputs: [{ shape: [4, 5], range: [-3, 3] }, { shape: [4], ints: [0, 4, 1, 1] }] },
  { op: 'composite', title: 'LayerNorm composed, float64', build: (x, w, b) => G.layerNormComposed(x, w, b), inputs: [{ shape: [2, 3, 8] }, { shape: [8] }, { shape: [8] }] },
  { op: 'composite', title: 'GELU composed from Erf, float32', build: G.gelu, inputs: [{ shape: [3, 4], range: [-3, 3] }], dtype: 'float32' },
  { op: 'composite', title: 'attention: softmax(q k^T / sqrt d) v, batched heads', build: (q, k, v) => G.matmul(G.softmax(G.mul(G.matmul(q, G.transpose(k, [0, 1, 3, 2])), q.graph.scalar(0.5, 'float64')), -1), v), inputs: [{ shape: [2, 2, 3, 4] }, { shape: [2, 2, 3, 4] }, { shape: [2, 2, 3, 4] }] },
  { op: 'composite', title: 'LoRA linear: x W + b + s (x A) B', build: (x, a, b) => G.add(G.matmul(x, x.graph.constant([0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8, -0.9, 1.0, 1.1, 1.2], [4, 3], 'float64')), G.mul(G.matmul(G.matmul(x, a), b), x.graph.scalar(2, 'float64'))), inputs: [{ shape: [2, 5, 4] }, { shape: [4, 2] }, { shape: [2, 3] }] },
  ...VISION_CASES,
];

/** A nonlinear scalar-per-row mix of two maps' outputs, so both outputs' gradients matter. */
function twoMaps([y1, y2]: G.Tensor[]): G.Tensor {
  const last = y1.rank - 1;
  return G.mul(G.reduceSum(G.mul(y1, y1), [last], true), G.reduceSum(y2, [last], true));
}

/** A constant float64 tensor of `shape` with varied values around `offset`. */
function fixed(like: G.Tensor, shape: number[], offset: number): G.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return like.graph.constant(Array.from({ length: n }, (_, i) => offset + 0.9 * Math.sin(1.7 * i + offset)), shape, 'float64');
}

const NON_DIFF = new Set(['ArgMax', 'Floor', 'StopGradient', 'ConvTranspose']);

test('every op in the op table has a gradient check (or is declared non-differentiable)', (t) => {
  const covered = new Set(CASES.map((c) => c.op));
  const missing = G.opNames().filter((n) => !covered.has(n) && !NON_DIFF.has(n));
  t.deepEqual(missing, []);
});

for (const c of CASES) {
  test(`gradcheck ${c.op}: ${c.title}`, async (t) => {
    const dtype = c.dtype ?? 'float64';
    const r = await gradcheck(c.build, c.inputs, { dtype, seed: 17 });
    const tol = dtype === 'float64' ? 1e-6 : 5e-3;
    t.true(r.checked > 0);
    t.true(r.maxRelErr < tol, `max relative error ${r.maxRelErr} >= ${tol} (${r.worst})`);
  });
}

test('fused LayerNorm and Gelu equal their composed forms', async (t) => {
  const { Session } = await import('../../src/runtime/index.ts');
  const g = new G.Graph();
  const x = g.input('x', [4, 16]);
  const w = g.input('w', [16]);
  const b = g.input('b', [16]);
  g.output(G.layerNorm(x, w, b), 'ln_fused');
  g.output(G.layerNormComposed(x, w, b), 'ln_composed');
  g.output(G.layerNormC(x, w, b), 'ln_c');
  g.output(G.geluFused(x), 'gelu_fused');
  g.output(G.gelu(x), 'gelu_composed');
  // GeluLinear's two forward emissions: fused Gelu when nothing differentiates it, the Erf chain when its VJP
  // keeps 1 + erf(x/√2); both against gelu(x)·W + c composed from primitives.
  const W = g.constant(Array.from({ length: 16 * 3 }, (_, i) => Math.cos(i) / 4), [16, 3], 'float32');
  const c = g.constant([0.1, -0.2, 0.3], [3], 'float32');
  g.output(G.geluLinear(x, W, c), 'gl_infer');
  const xt = g.input('xt', [4, 16]);
  const ylTrain = G.geluLinear(xt, W, c);
  g.output(ylTrain, 'gl_train');
  g.output(G.grad(G.sumAll(G.mul(ylTrain, ylTrain)), [xt])[0], 'gl_train_dx');
  g.output(G.add(G.matmul(G.gelu(x), W), c), 'gl_composed');
  const s = await Session.create(G.exportOnnx(g), { threads: 1 });
  const data = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) * 2);
  const wd = Float32Array.from({ length: 16 }, (_, i) => 1 + i / 16);
  const bd = Float32Array.from({ length: 16 }, (_, i) => i / 32);
  const out = await s.run({ x: { data, dims: [4, 16] }, xt: { data, dims: [4, 16] }, w: { data: wd, dims: [16] }, b: { data: bd, dims: [16] } });
  const maxDiff = (a: string, c: string): number => Math.max(...Array.from(out[a] as Float32Array, (v, i) => Math.abs(v - (out[c] as Float32Array)[i])));
  t.true(maxDiff('ln_fused', 'ln_composed') < 1e-4);
  t.true(maxDiff('ln_c', 'ln_composed') < 1e-5);
  t.true(maxDiff('gelu_fused', 'gelu_composed') < 1e-5);
  t.true(maxDiff('gl_infer', 'gl_composed') < 1e-5);
  t.true(maxDiff('gl_train', 'gl_composed') < 1e-5);
});

test('StopGradient: d/dx [x * stopGradient(x)] = x, not 2x', async (t) => {
  const { Session } = await import('../../src/runtime/index.ts');
  const g = new G.Graph();
  const x = g.input('x', [4], 'float64');
  const [dx] = G.grad(G.sumAll(G.mul(x, G.stopGradient(x))), [x]);
  g.output(dx, 'dx');
  const s = await Session.create(G.exportOnnx(g), { threads: 1 });
  const xd = Float64Array.from([0.5, -1, 2, 3]);
  t.deepEqual(Array.from((await s.run({ x: { data: xd, dims: [4] } })).dx as Float64Array), Array.from(xd));
});

test('a gradient through an op without a VJP raises GradientError naming the op', (t) => {
  const g = new G.Graph();
  const x = g.input('x', [3], 'float32');
  const loss = G.sumAll(G.mul(G.floor(x), x));
  const err = t.throws(() => G.grad(loss, [x]), { instanceOf: G.GradientError });
  t.is(err?.op, 'Floor');
});

test('graph errors name the op: shape mismatch, bad reshape, unknown op', (t) => {
  const g = new G.Graph();
  const a = g.input('a', [2, 3]);
  const b = g.input('b', [4, 5]);
  t.is(t.throws(() => G.matmul(a, b), { instanceOf: G.GraphError })?.op, 'MatMul');
  t.is(t.throws(() => G.add(a, b), { instanceOf: G.GraphError })?.op, 'Add');
  t.is(t.throws(() => G.reshape(a, [4, -1]), { instanceOf: G.GraphError })?.op, 'Reshape');
  t.is(t.throws(() => G.getOp('NoSuchOp'), { instanceOf: G.GraphError })?.op, 'NoSuchOp');
  const x64 = g.input('x64', [2, 3], 'float64');
  t.is(t.throws(() => G.geluLinear(x64, g.input('w64', [3, 2], 'float64'), g.input('c64', [2], 'float64')), { instanceOf: G.GraphError })?.op, 'GeluLinear');
  const ln = t.throws(() => G.layerNormLinear(a, g.input('lw', [3]), g.input('lb', [3]), [{ weight: g.input('W', [4, 2]), bias: g.input('c', [2]) }]), { instanceOf: G.GraphError });
  t.is(ln?.op, 'LayerNormLinear');
  t.regex(ln?.message ?? '', /weight 0 must be \[3, out\]/);
  t.throws(() => G.grad(a, [a]), { instanceOf: G.GraphError });
});

test('export is deterministic and pins IR/opset', async (t) => {
  const build = (): Uint8Array => {
    const g = new G.Graph();
    const x = g.input('x', [2, 3]);
    const w = g.initializer('w', Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 2]);
    const y = G.softmax(G.matmul(x, w));
    g.output(y, 'y');
    g.output(G.grad(G.sumAll(G.mul(y, y)), [x])[0], 'dx');
    return G.exportOnnx(g);
  };
  t.deepEqual(build(), build());
  const onnxProto = (await import('onnx-proto')).default;
  const m = onnxProto.onnx.ModelProto.decode(build());
  t.is(Number(m.irVersion), G.ONNX_IR_VERSION);
  t.is(Number(m.opsetImport[0].version), G.ONNX_OPSET);
});
