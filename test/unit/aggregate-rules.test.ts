import test from 'ava';
import {
  AGGREGATOR_NAMES, AggregateError, AggregateRefusal, aggregatePrototypes, ffaLora, getAggregator, hetlora, momentumFromStep, prototypeMeans,
  resizeLora, type AggregateInput,
} from '../../src/aggregate/index.ts';
import type { UpdateManifest } from '../../src/update/index.ts';

const u = (x: number[], n = 1, extra: Record<string, number[]> = {}): AggregateInput => ({
  deltas: new Map([['x', Float32Array.from(x)], ...Object.entries(extra).map(([k, v]) => [k, Float32Array.from(v)] as [string, Float32Array])]),
  sampleCount: n,
});
const get = (r: { deltas: Map<string, Float32Array> }, k = 'x'): number[] => Array.from(r.deltas.get(k)!);
const close = (t: import('ava').ExecutionContext, a: number[], b: number[], tol = 1e-6): void => {
  t.is(a.length, b.length);
  a.forEach((v, i) => t.true(Math.abs(v - b[i]) <= tol, `index ${i}: ${v} vs ${b[i]}`));
};

test('fedavg weights by sample count; uniform weighting is the plain mean', (t) => {
  const ups = [u([1, 2], 1), u([3, 6], 3)];
  const r = getAggregator('fedavg')(ups);
  close(t, get(r), [2.5, 5]);
  t.is(r.sampleCount, 4);
  close(t, get(getAggregator('fedavg')(ups, { weighting: 'uniform' })), [2, 4]);
});

test('median and trimmed mean, hand-computed', (t) => {
  close(t, get(getAggregator('median')([u([1]), u([5]), u([3])])), [3]);
  close(t, get(getAggregator('median')([u([1, 0]), u([2, 0]), u([10, 0]), u([20, 1])])), [6, 0]);
  close(t, get(getAggregator('trimmed-mean')([u([1]), u([2]), u([10]), u([20])], { trimFraction: 0.25 })), [6]);
  close(t, get(getAggregator('trimmed-mean')([u([0]), u([1]), u([2]), u([3]), u([100])], { trimFraction: 0.2 })), [2]);
  // default 10% trims nothing from 5 updates: plain (unweighted) mean
  close(t, get(getAggregator('trimmed-mean')([u([0]), u([1]), u([2]), u([3]), u([100], 50)])), [21.2], 1e-4);
});

test('norm-bound clips to the median norm by default, or to maxNorm', (t) => {
  const ups = [u([3, 4]), u([0, 1]), u([0, 2])];
  close(t, get(getAggregator('norm-bound')(ups)), [1.2 / 3, (1.6 + 1 + 2) / 3], 1e-6);
  close(t, get(getAggregator('norm-bound')(ups, { maxNorm: 1 })), [0.6 / 3, (0.8 + 1 + 1) / 3], 1e-6);
});

test('fedadam / fedyogi: one and two steps, hand-computed (Reddi et al. 2021, v0 = tau^2)', (t) => {
  const ups = [u([0.5], 1), u([0.5], 1)];
  const tau = 1e-3, lr = 0.01;
  const a1 = getAggregator('fedadam')(ups);
  const m1 = 0.1 * 0.5;
  const v1 = 0.99 * tau * tau + 0.01 * 0.25;
  close(t, get(a1), [(lr * m1) / (Math.sqrt(v1) + tau)], 1e-7);
  const a2 = getAggregator('fedadam')([u([-1])], { state: a1.state });
  const m2 = 0.9 * m1 + 0.1 * -1;
  const v2 = 0.99 * v1 + 0.01 * 1;
  close(t, get(a2), [(lr * m2) / (Math.sqrt(v2) + tau)], 1e-7);
  t.is(a2.state!.step, 2);
  const y1 = getAggregator('fedyogi')(ups);
  const vy = tau * tau + 0.01 * 0.25; // v - (1-b2) g^2 sign(v - g^2) with v < g^2
  close(t, get(y1), [(lr * m1) / (Math.sqrt(vy) + tau)], 1e-7);
  const g1 = getAggregator('fedadagrad')(ups);
  close(t, get(g1), [(lr * m1) / (Math.sqrt(tau * tau + 0.25) + tau)], 1e-7);
  // server optimizer over a robust inner rule
  const med = getAggregator('fedadam')([u([0.5]), u([0.5]), u([100])], { inner: 'median' });
  close(t, get(med), get(a1), 1e-7);
  t.throws(() => getAggregator('fedadam')(ups, { inner: 'fedadam' }), { instanceOf: AggregateError });
});

test('fedavgm: server momentum and learning rate, hand-computed; the buffer is recoverable from the applied step', (t) => {
  const ups = [u([1, 2], 1), u([3, 6], 3)]; // FedAvg: [2.5, 5]
  const a1 = getAggregator('fedavgm')(ups, { serverLr: 2, serverMomentum: 0.5 });
  close(t, get(a1), [5, 10]);
  const a2 = getAggregator('fedavgm')([u([1, -1])], { serverLr: 2, serverMomentum: 0.5, state: a1.state });
  close(t, get(a2), [2 * (0.5 * 2.5 + 1), 2 * (0.5 * 5 - 1)]);
  t.is(a2.state!.step, 2);
  // A member that only saw the applied step of round 1 holds the same buffer as the leader of round 1.
  const derived = momentumFromStep(a1.deltas, { serverLr: 2, serverMomentum: 0.5 });
  const a2b = getAggregator('fedavgm')([u([1, -1])], { serverLr: 2, serverMomentum: 0.5, state: derived });
  close(t, get(a2b), get(a2));
  // momentum 0 and lr 1 is FedAvg
  close(t, get(getAggregator('fedavgm')(ups, { serverMomentum: 0 })), get(getAggregator('fedavg')(ups)));
  for (const bad of [{ serverMomentum: 1 }, { serverMomentum: -0.1 }, { serverLr: 0 }, { serverLr: Number.NaN }, { serverLr: 1000 }]) {
    t.is(t.throws(() => getAggregator('fedavgm')(ups, bad), { instanceOf: AggregateError })?.reason, AggregateRefusal.BAD_OPTION, JSON.stringify(bad));
  }
});

test('fedexp: extrapolates by sum w_i |D_i|^2 / (2 |mean D|^2), never below 1, capped by serverLr', (t) => {
  // Two orthogonal unit updates: mean [0.5, 0.5], |mean|^2 = 0.5 -> eta = 1 / (2 * 0.5) = 1
  const a = getAggregator('fedexp')([u([1, 0]), u([0, 1])]);
  t.true(Math.abs(a.serverStep! - 1) < 1e-6);
  // Three orthogonal unit updates: mean |.|^2 = 1/3 -> eta = 1 / (2/3) = 1.5
  const b = getAggregator('fedexp')([u([1, 0, 0]), u([0, 1, 0]), u([0, 0, 1])]);
  t.true(Math.abs(b.serverStep! - 1.5) < 1e-6);
  close(t, get(b), [0.5, 0.5, 0.5]);
  // Identical updates: eta = 1/2 -> clamped to 1 (plain FedAvg)
  close(t, get(getAggregator('fedexp')([u([2, 2]), u([2, 2])])), [2, 2]);
  // Opposite updates: huge eta, capped by serverLr
  const c = getAggregator('fedexp')([u([1, 0.01]), u([-1, 0.01])], { serverLr: 3 });
  t.is(c.serverStep, 3);
  t.is(t.throws(() => getAggregator('fedexp')([u([1])], { serverLr: 0.5 }), { instanceOf: AggregateError })?.reason, AggregateRefusal.BAD_OPTION);
});

const manifest: UpdateManifest = {
  tensors: [
    { name: 'l.lora_a', shape: [2, 2], loraAxis: 1 },
    { name: 'l.lora_b', shape: [2, 2], loraAxis: 0 },
    { name: 'head', shape: [2] },
  ],
};

test('hetlora: zero padding vs replication padding, hand-computed', (t) => {
  const r1: AggregateInput = { sampleCount: 1, loraRank: 1, deltas: new Map([
    ['l.lora_a', Float32Array.from([1, 1])], ['l.lora_b', Float32Array.from([1, 1])], ['head', Float32Array.from([0, 2])]]) };
  const r2: AggregateInput = { sampleCount: 1, loraRank: 2, deltas: new Map([
    ['l.lora_a', Float32Array.from([3, 5, 3, 5])], ['l.lora_b', Float32Array.from([3, 3, 7, 7])], ['head', Float32Array.from([2, 2])]]) };
  const z = hetlora('zero')([r1, r2], { manifest });
  close(t, get(z, 'l.lora_a'), [2, 2.5, 2, 2.5]);
  close(t, get(z, 'l.lora_b'), [2, 2, 3.5, 3.5]);
  close(t, get(z, 'head'), [1, 2]);
  t.is(z.loraRank, 2);
  const p = getAggregator('hetlora-replicate')([r1, r2], { manifest });
  close(t, get(p, 'l.lora_a'), [2, 5, 2, 5]);
  close(t, get(p, 'l.lora_b'), [2, 2, 7, 7]);
  // truncation back to a node's rank keeps the leading slices
  const back = resizeLora(p.deltas, manifest, 2, 1);
  close(t, get({ deltas: back }, 'l.lora_a'), [2, 2]);
  close(t, get({ deltas: back }, 'l.lora_b'), [2, 2]);
  t.throws(() => getAggregator('fedavg')([r1, r2]), { instanceOf: AggregateError, message: /shape-mismatch/ });
});

test('fedavgm over hetlora-zero (--aggregator-inner): server momentum on the rank-padded mean; the buffer carries into the next round', (t) => {
  const r1: AggregateInput = { sampleCount: 1, loraRank: 1, deltas: new Map([
    ['l.lora_a', Float32Array.from([1, 1])], ['l.lora_b', Float32Array.from([1, 1])], ['head', Float32Array.from([0, 2])]]) };
  const r2: AggregateInput = { sampleCount: 1, loraRank: 2, deltas: new Map([
    ['l.lora_a', Float32Array.from([3, 5, 3, 5])], ['l.lora_b', Float32Array.from([3, 3, 7, 7])], ['head', Float32Array.from([2, 2])]]) };
  const opts = { manifest, inner: 'hetlora-zero', serverLr: 1, serverMomentum: 0.5 };
  t.throws(() => getAggregator('fedavgm')([r1, r2], { manifest, serverLr: 1 }), { instanceOf: AggregateError, message: /shape-mismatch/ }, 'the default inner rule (fedavg) refuses mixed ranks');
  const first = getAggregator('fedavgm')([r1, r2], opts);
  close(t, get(first, 'l.lora_a'), [2, 2.5, 2, 2.5]);
  close(t, get(first, 'head'), [1, 2]);
  const second = getAggregator('fedavgm')([r1, r2], { ...opts, state: first.state });
  close(t, get(second, 'l.lora_a'), [3, 3.75, 3, 3.75], 1e-6);
  close(t, get(second, 'l.lora_b'), [3, 3, 5.25, 5.25], 1e-6);
});

test('ffa-lora: plain averaging of B is exact when A is frozen; changed A is refused', (t) => {
  const A = [0.3, -1, 2, 0.5]; // shared frozen A (2x2)
  const b1 = [1, 2, 3, 4], b2 = [-1, 0, 5, 2];
  const mk = (b: number[], n: number, a = [0, 0, 0, 0]): AggregateInput => ({ sampleCount: n, loraRank: 2, deltas: new Map([
    ['l.lora_a', Float32Array.from(a)], ['l.lora_b', Float32Array.from(b)], ['head', new Float32Array(2)]]) });
  const r = ffaLora([mk(b1, 1), mk(b2, 3)], { manifest });
  const mm = (a: number[], b: number[]): number[] => [a[0] * b[0] + a[1] * b[2], a[0] * b[1] + a[1] * b[3], a[2] * b[0] + a[3] * b[2], a[2] * b[1] + a[3] * b[3]];
  const avgProduct = mm(A, b1).map((v, i) => 0.25 * v + 0.75 * mm(A, b2)[i]);
  close(t, mm(A, get(r, 'l.lora_b')), avgProduct, 1e-5);
  const err = t.throws(() => ffaLora([mk(b1, 1), mk(b2, 1, [0, 1e-3, 0, 0])], { manifest }), { instanceOf: AggregateError });
  t.is(err?.reason, AggregateRefusal.FROZEN_A_CHANGED);
});

test('prototypes: count-weighted class means; unseen classes do not dilute', (t) => {
  const n1 = [{ exit: 0, dim: 2, counts: [2, 0], sums: Float32Array.from([2, 4, 0, 0]) }];
  const n2 = [{ exit: 0, dim: 2, counts: [1, 3], sums: Float32Array.from([4, 4, 3, 6]) }, { exit: 1, dim: 2, counts: [0, 1], sums: Float32Array.from([0, 0, 9, 9]) }];
  const agg = aggregatePrototypes([n1, n2]);
  t.deepEqual(agg.map((a) => a.exit), [0, 1]);
  t.deepEqual(agg[0].counts, [3, 3]);
  const means = prototypeMeans(agg[0]);
  close(t, Array.from(means[0]!), [2, 8 / 3]);
  close(t, Array.from(means[1]!), [1, 2]);
  t.is(prototypeMeans(agg[1])[0], null);
});

test('registry: every name resolves, unknown names are a typed error, empty input is refused', (t) => {
  for (const n of ['fedavg', 'fedavgm', 'fedexp', 'fedadam', 'fedyogi', 'median', 'trimmed-mean', 'norm-bound', 'flexlora', 'hetlora-zero', 'hetlora-replicate', 'ffa-lora']) {
    t.true(AGGREGATOR_NAMES.includes(n), n);
    t.is(typeof getAggregator(n), 'function');
  }
  t.is(t.throws(() => getAggregator('krum'), { instanceOf: AggregateError })?.reason, AggregateRefusal.UNKNOWN_AGGREGATOR);
  t.is(t.throws(() => getAggregator('toString'), { instanceOf: AggregateError })?.reason, AggregateRefusal.UNKNOWN_AGGREGATOR);
  t.is(t.throws(() => getAggregator('fedavg')([]), { instanceOf: AggregateError })?.reason, AggregateRefusal.NO_UPDATES);
  t.is(t.throws(() => getAggregator('trimmed-mean')([u([1])], { trimFraction: 0.5 }), { instanceOf: AggregateError })?.reason, AggregateRefusal.BAD_OPTION);
  t.is(t.throws(() => getAggregator('fedavg')([u([1], 0)]), { instanceOf: AggregateError })?.reason, AggregateRefusal.NON_FINITE);
});

test('non-finite values are refused, not averaged', (t) => {
  for (const name of ['fedavg', 'median', 'trimmed-mean', 'norm-bound', 'fedadam', 'fedavgm']) {
    const err = t.throws(() => getAggregator(name)([u([1, 2]), u([NaN, 0])]), { instanceOf: AggregateError });
    t.is(err?.reason, AggregateRefusal.NON_FINITE, name);
  }
});

test('aggregateRound: decoded updates through the named rule, prototypes merged', async (t) => {
  const { aggregateRound } = await import('../../src/aggregate/index.ts');
  const { encodeUpdate, decodeUpdate } = await import('../../src/update/index.ts');
  const m: UpdateManifest = { tensors: [{ name: 'x', shape: [2] }], prototypes: { exits: 1, classes: 2, dim: 1 } };
  const mk = (x: number[], n: number, sender: string, counts: number[], sums: number[]) => decodeUpdate(encodeUpdate({
    federation: 'f', round: 1, baseVersion: 0, sender, sampleCount: n, loraRank: 0, deltas: new Map([['x', Float32Array.from(x)]]),
    prototypes: [{ exit: 0, dim: 1, counts, sums: Float32Array.from(sums) }],
  }, m).bytes, m);
  const ua = mk([1, 2], 1, 'a', [1, 0], [5, 0]);
  const ub = mk([3, 6], 3, 'b', [2, 2], [1, 4]);
  const failures = { missing: [{ peer: 'c', why: 'withheld' }] };
  const r = aggregateRound({ rule: 'fedavg', updates: [ub, ua] }, failures);
  close(t, get(r), [2.5, 5]);
  t.deepEqual(r.senders, ['a', 'b'], 'sorted sender order whatever the input order');
  t.deepEqual(r.prototypes[0].counts, [3, 2]);
  close(t, Array.from(r.prototypes[0].sums), [6, 4]);
  t.is(r.rule, 'fedavg');
  t.is(r.failures, failures, 'failures are passed through, not thrown');
  // Deterministic: fedavgm with server state twice from the same inputs is bit-identical, and the state passed in
  // is not modified.
  const state = { step: 1, m: new Map([['x', Float64Array.from([0.5, -0.25])]]), v: new Map() };
  const a1 = aggregateRound({ rule: 'fedavgm', updates: [ua, ub], options: { serverMomentum: 0.6 } }, undefined, state);
  const a2 = aggregateRound({ rule: 'fedavgm', updates: [ub, ua], options: { serverMomentum: 0.6 } }, undefined, state);
  t.deepEqual(Array.from(a1.deltas.get('x')!), Array.from(a2.deltas.get('x')!));
  t.deepEqual(Array.from(state.m.get('x')!), [0.5, -0.25]);
  t.is(a1.state!.step, 2);
  const fresh = aggregateRound({ rule: 'fedavgm', updates: [ua, ub], options: { serverMomentum: 0.6 } });
  t.notDeepEqual(Array.from(fresh.deltas.get('x')!), Array.from(a1.deltas.get('x')!), 'the server state matters');
});
