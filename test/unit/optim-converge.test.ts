import test from 'ava';
import { AdamW, SGD, type Optimizer } from '../../src/train/optim.ts';
import { Rng } from '../../src/util/rng.ts';

/** f(x) = 0.5 * sum_i a_i (x_i - c_i)^2, an ill-conditioned quadratic with a known minimum c. */
function quadratic(n: number, seed: number): { a: Float32Array; c: Float32Array } {
  const r = new Rng(seed);
  return { a: Float32Array.from({ length: n }, () => r.uniform(0.1, 10)), c: Float32Array.from({ length: n }, () => r.uniform(-3, 3)) };
}

function run(make: (p: Record<string, Float32Array>) => Optimizer, steps: number): number {
  const { a, c } = quadratic(64, 5);
  const x = new Float32Array(64);
  const g = new Float32Array(64);
  const opt = make({ x });
  for (let s = 0; s < steps; s++) {
    for (let i = 0; i < 64; i++) g[i] = a[i] * (x[i] - c[i]);
    opt.step({ x: g });
  }
  let err = 0;
  for (let i = 0; i < 64; i++) err = Math.max(err, Math.abs(x[i] - c[i]));
  return err;
}

test('AdamW (no decay) converges to the minimum of a quadratic', (t) => {
  const err = run((p) => new AdamW(p, { lr: 0.05, weightDecay: 0 }), 2000);
  t.true(err < 1e-3, `max |x - c| = ${err}`);
});

test('AdamW with decoupled weight decay settles at clamp(c, -1/wd, 1/wd), not at c', (t) => {
  // At a stationary point of p <- p(1 - lr wd) - lr m̂/(sqrt(v̂) + eps) the normalized step is at most 1 in
  // magnitude, so |p| <= 1/wd: components whose minimum lies beyond 1/wd = 2 stop at +-2.
  const { a, c } = quadratic(64, 5);
  const x = new Float32Array(64);
  const g = new Float32Array(64);
  const opt = new AdamW({ x }, { lr: 0.01, weightDecay: 0.5, betas: [0.9, 0.99] });
  for (let s = 0; s < 3000; s++) {
    for (let i = 0; i < 64; i++) g[i] = a[i] * (x[i] - c[i]);
    opt.step({ x: g });
  }
  let errC = 0;
  let errClamp = 0;
  for (let i = 0; i < 64; i++) {
    errC = Math.max(errC, Math.abs(x[i] - c[i]));
    errClamp = Math.max(errClamp, Math.abs(x[i] - Math.max(-2, Math.min(2, c[i]))));
  }
  t.true(errClamp < 0.1, `max |x - clamp(c)| = ${errClamp}`);
  t.true(errC > 0.5, `max |x - c| = ${errC}`);
});

test('SGD, SGD+momentum and Nesterov converge; momentum is faster on the ill-conditioned quadratic', (t) => {
  const plain = run((p) => new SGD(p, { lr: 0.05 }), 300);
  const mom = run((p) => new SGD(p, { lr: 0.05, momentum: 0.9 }), 300);
  const nest = run((p) => new SGD(p, { lr: 0.05, momentum: 0.9, nesterov: true }), 300);
  t.true(mom < 1e-3, `momentum ${mom}`);
  t.true(nest < 1e-3, `nesterov ${nest}`);
  t.true(plain > 0.1, `plain SGD after 300 steps ${plain}`);
  t.true(run((p) => new SGD(p, { lr: 0.05 }), 3000) < 1e-3);
});
