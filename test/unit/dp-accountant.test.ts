import test from 'ava';
import { RdpAccountant, computeRdp, rdpToEpsilon, privatizeUpdate, clipToNorm, l2Norm, PrivacyError } from '../../src/privacy/index.ts';
import { Rng } from '../../src/util/rng.ts';

// Reference values from TensorFlow Privacy, tensorflow_privacy/privacy/analysis/rdp_accountant_test.py
// (test_compute_rdp_no_sampling, test_compute_rdp_scalar, test_compute_rdp_sequence,
//  test_get_privacy_spent_check_target_delta, test_check_composition; classic RDP→DP conversion).
const near = (t: import('ava').ExecutionContext, got: number, want: number, tol: number): void => {
  t.true(Math.abs(got - want) <= tol, `got ${got}, want ${want} ± ${tol}`);
};

test('compute_rdp matches TF-Privacy reference values (integer and fractional orders)', (t) => {
  t.is(computeRdp(1, 10, 1, [20])[0], 0.1);
  t.is(computeRdp(0, 10, 1, [20])[0], 0);
  near(t, computeRdp(0.1, 2, 10, [5])[0], 0.07737, 5e-6);
  const seq = computeRdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100]);
  [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307].forEach((want, i) => near(t, seq[i], want, 1e-5));
});

test('get_privacy_spent matches TF-Privacy (classic conversion)', (t) => {
  const orders = Array.from({ length: 31 }, (_, i) => i + 2);
  const r = rdpToEpsilon(orders, computeRdp(0.01, 4, 10000, orders), 1e-5, 'classic');
  near(t, r.epsilon, 1.258575, 5e-6);
  t.is(r.order, 20);
  const comp = [1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 64, 256];
  const acc = new RdpAccountant(comp).step(1e-4, 0.4, 40000).step(0.1, 2, 100);
  const c = rdpToEpsilon(comp, acc.toJSON().rdp, 1e-5, 'classic');
  near(t, c.epsilon, 8.509656, 5e-6);
  t.is(c.order, 2.5);
  t.is(acc.steps, 40100);
});

test('the classic DP-SGD MNIST figures (TF-Privacy tutorials README: N=60000, batch 256, delta=1e-5)', (t) => {
  // compute_dp_sgd_privacy.py orders; the README reports eps 3.01 (z=1.1, 60 epochs), 1.19 (z=1.3, 15), 7.10 (z=0.7, 45).
  const orders = [...Array.from({ length: 99 }, (_, x) => 1 + (x + 1) / 10), ...Array.from({ length: 52 }, (_, x) => 12 + x)];
  for (const [z, epochs, want] of [[1.1, 60, 3.01], [1.3, 15, 1.19], [0.7, 45, 7.1]]) {
    const acc = new RdpAccountant(orders).step(256 / 60000, z, Math.ceil((epochs * 60000) / 256));
    near(t, acc.epsilon(1e-5, 'classic'), want, 0.005);
    // The improved conversion (Balle et al. 2020; Opacus) is never worse.
    t.true(acc.epsilon(1e-5, 'improved') <= acc.epsilon(1e-5, 'classic'));
  }
});

test('accountant: composition is additive, state round-trips, bad parameters are typed errors', (t) => {
  const a = new RdpAccountant().step(0.1, 1.0, 3);
  const b = new RdpAccountant().step(0.1, 1.0).step(0.1, 1.0).step(0.1, 1.0);
  near(t, a.epsilon(1e-5), b.epsilon(1e-5), 1e-12);
  t.true(new RdpAccountant().step(0.1, 1.0, 30).epsilon(1e-5) > a.epsilon(1e-5));
  const c = RdpAccountant.fromJSON(JSON.parse(JSON.stringify(a.toJSON())));
  t.is(c.epsilon(1e-5), a.epsilon(1e-5));
  t.throws(() => new RdpAccountant().step(1.5, 1), { instanceOf: PrivacyError });
  t.throws(() => new RdpAccountant().epsilon(0), { instanceOf: PrivacyError });
  t.is(new RdpAccountant().step(0.5, 0).epsilon(1e-5), Infinity);
});

test('client-level DP: clipping bounds the norm; noise has the configured std', (t) => {
  const rng = new Rng(9);
  const d = new Map([['a', Float32Array.from({ length: 5000 }, () => rng.normal())], ['b', Float32Array.from([3, 4])]]);
  const { deltas, norm, factor } = clipToNorm(d, 2);
  t.true(norm > 2 && factor < 1);
  near(t, l2Norm(deltas), 2, 1e-4);
  const zero = new Map([['a', new Float32Array(20000)]]);
  const p = privatizeUpdate(zero, { clipNorm: 1, noiseMultiplier: 2, noiseShares: 4 }, rng);
  t.is(p.noiseStd, 1);
  const xs = p.deltas.get('a')!;
  const mean = xs.reduce((s, v) => s + v, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((s, v) => s + (v - mean) ** 2, 0) / xs.length);
  near(t, sd, 1, 0.03);
  near(t, mean, 0, 0.03);
  t.throws(() => clipToNorm(d, 0), { instanceOf: PrivacyError });
});

test('calibrateNoiseMultiplier inverts the accountant (MNIST example: eps 3.01 needs z ~ 1.1)', async (t) => {
  const { calibrateNoiseMultiplier } = await import('../../src/privacy/index.ts');
  const orders = [...Array.from({ length: 99 }, (_, x) => 1 + (x + 1) / 10), ...Array.from({ length: 52 }, (_, x) => 12 + x)];
  const z = calibrateNoiseMultiplier(3.01, 1e-5, 256 / 60000, 14063, orders, 'classic');
  t.true(Math.abs(z - 1.1) < 0.01, `z = ${z}`);
  const acc = new RdpAccountant(orders).step(256 / 60000, z, 14063);
  t.true(acc.epsilon(1e-5, 'classic') <= 3.01);
  t.throws(() => calibrateNoiseMultiplier(1e-6, 1e-5, 1, 1e6), { instanceOf: PrivacyError });
});
