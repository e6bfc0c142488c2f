import test from 'ava';
import { AdamW, SGD, OptimizerError, globalNorm } from '../../src/train/optim.ts';

const close = (t: { true: (b: boolean, m?: string) => void }, a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-6): void => {
  t.true(a.length === b.length, 'length');
  for (let i = 0; i < a.length; i++) {
    const ok = Math.abs(a[i] - b[i]) <= tol * Math.max(1, Math.abs(b[i]));
    if (!ok) return t.true(false, `index ${i}: ${a[i]} != ${b[i]}`);
  }
  t.true(true);
};

test('AdamW step 1 by hand: p=1, g=0.5, lr=0.1, wd=0.01 gives 0.999 - 0.1 * 0.5 / (0.5 + 1e-8)', (t) => {
  const p = Float32Array.of(1, -2, 0);
  const opt = new AdamW({ w: p }, { lr: 0.1 });
  opt.step({ w: Float32Array.of(0.5, 0.5, -1) });
  // m = 0.05, v = 0.00025 → m̂ = 0.5, v̂ = 0.25, update = 0.1 * 0.5 / (0.5 + 1e-8) = 0.0999999980
  t.is(p[0], Math.fround(0.999 - 0.099999998));
  t.is(p[1], Math.fround(-2 * 0.999 - 0.099999998));
  t.is(p[2], Math.fround(0 + 0.1 * 1 / (1 + 1e-8)));
  t.is(opt.stepCount, 1);
});

test('AdamW matches the PyTorch algorithm (bias-corrected m̂, v̂ form) over 3 varying steps', (t) => {
  const lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  const p0 = [0.3, -1.2, 2.5, 0];
  const gs = [
    [0.1, -0.4, 2.0, 1e-3],
    [-0.2, 0.3, 1.5, -1e-3],
    [0.05, 0.1, -3.0, 0],
  ];
  const p = Float32Array.from(p0);
  const opt = new AdamW(new Map([['x', p]]), { lr, weightDecay: wd });
  // Reference written from the algorithm box of torch.optim.AdamW's documentation, float64.
  const q = p0.slice();
  const m = [0, 0, 0, 0], v = [0, 0, 0, 0];
  for (let t_ = 1; t_ <= 3; t_++) {
    const g = gs[t_ - 1];
    for (let j = 0; j < 4; j++) {
      q[j] = q[j] - lr * wd * q[j];
      m[j] = b1 * m[j] + (1 - b1) * g[j];
      v[j] = b2 * v[j] + (1 - b2) * g[j] * g[j];
      const mh = m[j] / (1 - b1 ** t_);
      const vh = v[j] / (1 - b2 ** t_);
      q[j] = q[j] - (lr * mh) / (Math.sqrt(vh) + eps);
    }
    opt.step(new Map([['x', Float32Array.from(g)]]));
    close(t, p, q, 1e-6);
  }
  const st = opt.state();
  close(t, st.buffers['exp_avg:x'], m, 1e-6);
  close(t, st.buffers['exp_avg_sq:x'], v, 1e-6);
  t.is(st.step, 3);
});

test('AdamW closed form for a constant gradient: p_t = p_{t-1}(1 - lr wd) - lr g / (|g| + eps)', (t) => {
  const lr = 1e-3, wd = 0.01, eps = 1e-8;
  const p = Float32Array.of(0.5, -0.25);
  const g = Float32Array.of(3, -0.001);
  const opt = new AdamW({ p }, {});
  let q0 = 0.5, q1 = -0.25;
  for (let s = 0; s < 50; s++) {
    opt.step({ p: g });
    q0 = q0 * (1 - lr * wd) - (lr * 3) / (3 + eps);
    q1 = q1 * (1 - lr * wd) + (lr * 0.001) / (0.001 + eps);
  }
  close(t, p, [q0, q1], 2e-6);
});

test('SGD momentum, PyTorch semantics, 3 steps by hand (buffer starts at the first gradient)', (t) => {
  // lr 0.1, momentum 0.9, wd 0: g = 1, 2, 3
  // b1 = 1           p = 1 - 0.1*1 = 0.9
  // b2 = 0.9 + 2 = 2.9     p = 0.9 - 0.29 = 0.61
  // b3 = 2.61 + 3 = 5.61   p = 0.61 - 0.561 = 0.049
  const p = Float32Array.of(1);
  const opt = new SGD({ p }, { lr: 0.1, momentum: 0.9 });
  const want = [0.9, 0.61, 0.049];
  [1, 2, 3].forEach((g, i) => {
    opt.step({ p: Float32Array.of(g) });
    t.true(Math.abs(p[0] - want[i]) < 1e-6, `step ${i + 1}: ${p[0]} vs ${want[i]}`);
  });
  t.true(Math.abs(opt.state().buffers['momentum_buffer:p'][0] - 5.61) < 1e-6);
});

test('SGD nesterov + weight decay + dampening by hand', (t) => {
  // Nesterov, lr 0.1, mu 0.5, wd 0.1, p0 = 2, g = 1 each step:
  // s1: d = 1 + 0.2 = 1.2; b = 1.2; step = d + 0.5 b = 1.8; p = 2 - 0.18 = 1.82
  // s2: d = 1 + 0.182 = 1.182; b = 0.6 + 1.182 = 1.782; step = 1.182 + 0.891 = 2.073; p = 1.82 - 0.2073 = 1.6127
  const p = Float32Array.of(2);
  const opt = new SGD({ p }, { lr: 0.1, momentum: 0.5, weightDecay: 0.1, nesterov: true });
  opt.step({ p: Float32Array.of(1) });
  t.true(Math.abs(p[0] - 1.82) < 1e-6);
  opt.step({ p: Float32Array.of(1) });
  t.true(Math.abs(p[0] - 1.6127) < 1e-6);
  // Dampening 0.5, mu 0.9, lr 1: b1 = g1 = 1 (no dampening on step 1), b2 = 0.9 + 0.5 * 1 = 1.4
  const q = Float32Array.of(0);
  const o2 = new SGD({ q }, { lr: 1, momentum: 0.9, dampening: 0.5 });
  o2.step({ q: Float32Array.of(1) });
  o2.step({ q: Float32Array.of(1) });
  t.true(Math.abs(q[0] - -2.4) < 1e-6);
  // Plain SGD.
  const r = Float32Array.of(1, 2);
  new SGD({ r }, { lr: 0.5 }).step({ r: Float32Array.of(2, -2) });
  t.deepEqual(Array.from(r), [0, 3]);
});

test('global-norm clipping scales the update like clip_grad_norm_ and leaves gradients untouched', (t) => {
  const a = Float32Array.of(0, 0);
  const b = Float32Array.of(0);
  const ga = Float32Array.of(3, 0);
  const gb = Float32Array.of(4);
  const opt = new SGD({ a, b }, { lr: 1, maxGradNorm: 1 });
  opt.step({ a: ga, b: gb });
  t.is(opt.lastGradNorm, 5);
  t.is(globalNorm({ a: ga, b: gb }), 5);
  const coef = 1 / (5 + 1e-6);
  close(t, a, [-3 * coef, 0], 1e-6);
  close(t, b, [-4 * coef], 1e-6);
  t.deepEqual(Array.from(ga), [3, 0]);
  // Below the threshold: no scaling.
  const c = Float32Array.of(0);
  const o2 = new SGD({ c }, { lr: 1, maxGradNorm: 10 });
  o2.step({ c: Float32Array.of(2) });
  t.is(c[0], -2);
  // Non-finite norm: refused before any change.
  const before = Array.from(a);
  t.throws(() => opt.step({ a: Float32Array.of(NaN, 0), b: gb }), { instanceOf: OptimizerError, message: /NaN/ });
  t.deepEqual(Array.from(a), before);
  t.is(opt.stepCount, 1);
});

test('state() / loadState() resumes exactly; mismatched state is a typed error', (t) => {
  const init = () => ({ w: Float32Array.of(0.1, 0.2, 0.3), b: Float32Array.of(-1) });
  const grads = (k: number) => ({ w: Float32Array.of(Math.sin(k), Math.cos(k), k / 10), b: Float32Array.of(1 / (k + 1)) });
  for (const make of [
    (p: Record<string, Float32Array>) => new AdamW(p, { lr: 0.05, maxGradNorm: 0.5 }),
    (p: Record<string, Float32Array>) => new SGD(p, { lr: 0.05, momentum: 0.9, nesterov: true }),
  ]) {
    const full = init();
    const o1 = make(full);
    for (let k = 0; k < 6; k++) o1.step(grads(k));
    const half = init();
    const o2 = make(half);
    for (let k = 0; k < 3; k++) o2.step(grads(k));
    const snap = o2.state();
    const json = JSON.parse(JSON.stringify({ ...snap, buffers: undefined })) as typeof snap;
    const resumedParams = { w: half.w.slice(), b: half.b.slice() };
    const o3 = make(resumedParams);
    o3.lr = 123; // overwritten by loadState, as in PyTorch
    o3.loadState({ ...json, buffers: snap.buffers });
    t.is(o3.lr, 0.05);
    for (let k = 3; k < 6; k++) o3.step(grads(k));
    t.deepEqual(resumedParams.w, full.w);
    t.deepEqual(resumedParams.b, full.b);
    t.is(o3.stepCount, 6);
    t.throws(() => o3.loadState({ ...snap, params: ['w'] }), { instanceOf: OptimizerError });
    const bad = { ...snap, buffers: { ...snap.buffers } };
    const key = Object.keys(bad.buffers)[0];
    bad.buffers[key] = new Float32Array(1);
    t.throws(() => o3.loadState(bad), { instanceOf: OptimizerError, message: /buffer/ });
  }
  const a = new AdamW({ w: new Float32Array(2) });
  const s = new SGD({ w: new Float32Array(2) }, { momentum: 0.9 });
  t.throws(() => a.loadState(s.state()), { instanceOf: OptimizerError, message: /sgd/ });
});

test('invalid hyperparameters and mismatched gradients are typed errors; bind re-points the arrays', (t) => {
  t.throws(() => new AdamW({ w: new Float32Array(1) }, { lr: -1 }), { instanceOf: OptimizerError, message: /lr/ });
  t.throws(() => new AdamW({ w: new Float32Array(1) }, { betas: [1, 0.999] }), { instanceOf: OptimizerError, message: /beta1/ });
  t.throws(() => new AdamW({}), { instanceOf: OptimizerError });
  t.throws(() => new SGD({ w: new Float32Array(1) }, { nesterov: true }), { instanceOf: OptimizerError, message: /nesterov/ });
  t.throws(() => new SGD({ w: new Float32Array(1) }, { maxGradNorm: 0 }), { instanceOf: OptimizerError });
  const opt = new AdamW({ w: new Float32Array(3) });
  t.throws(() => opt.step({ w: new Float32Array(2) }), { instanceOf: OptimizerError, message: /2 elements/ });
  t.throws(() => opt.step({ v: new Float32Array(3) }), { instanceOf: OptimizerError, message: /'w'/ });
  t.throws(() => opt.step({ w: new Float32Array(3), v: new Float32Array(3) }), { instanceOf: OptimizerError });
  const fresh = Float32Array.of(1, 1, 1);
  opt.bind({ w: fresh });
  opt.step({ w: Float32Array.of(1, 1, 1) });
  t.true(fresh[0] < 1);
  t.throws(() => opt.bind({ w: new Float32Array(4) }), { instanceOf: OptimizerError });
});
