import test from 'ava';
import { BudgetError, budgetRanks, depthFractions, loraShare, pickBudget, type BudgetInput } from '../../src/round/budget-auto.ts';

/** vit-tiny-mnist's shape: 4 blocks, dim 64, MLP 128, 7x7 patches + CLS. */
const SHAPE = { depth: 4, dim: 64, mlp: 128, tokens: 50, targets: ['q', 'k', 'v', 'proj', 'fc1', 'fc2'] as const };

/** 64 samples/s at rank 8: one batch-64 step at full depth takes 1 s; latency linear in depth (f = k/4). */
const base = (o: Partial<BudgetInput> = {}): BudgetInput => ({
  roundSeconds: 100, localSteps: 10, batch: 64, maxDepth: 4, maxRank: 8, rankFlexible: true, shape: SHAPE,
  measurement: { trainThroughput: 64, rank: 8, exitLatencyMs64: [1, 2, 3, 4] }, ...o,
});

test('loraShare: hand-computed multiply-add share of vit-tiny at rank 8', (t) => {
  // frozen: 4*64*64 + 2*64*128 + 2*50*64 = 39168; LoRA: 8*(4*128 + 2*192) = 7168; 3*7168 / (2*39168).
  t.true(Math.abs(loraShare(SHAPE, 8) - (3 * 7168) / (2 * 39168)) < 1e-12);
  t.true(Math.abs(loraShare({ ...SHAPE, targets: ['q'] }, 2) - (3 * 2 * 128) / (2 * 39168)) < 1e-12);
});

test('budgetRanks: powers of two below the bound and the bound, largest first; the bound alone when not flexible', (t) => {
  t.deepEqual(budgetRanks(8), [8, 4, 2, 1]);
  t.deepEqual(budgetRanks(6), [6, 4, 2, 1]);
  t.deepEqual(budgetRanks(1), [1]);
  t.deepEqual(budgetRanks(8, false), [8]);
});

test('a large budget keeps the full depth and rank; the message says what and why', (t) => {
  const p = pickBudget(base());
  t.like(p, { depth: 4, rank: 8, outcome: 'fits', depthModel: 'measured' });
  t.true(Math.abs(p.stepSeconds - 1) < 1e-12);
  t.true(Math.abs(p.trainSeconds - 10) < 1e-12);
  t.is(p.reason, 'budget auto: depth 4 of 4, rank 8: 1.0 s per step at depth 4, 10 steps = 10 s ≤ 100 s');
});

test('depth first: the deepest depth whose prediction fits, then the largest rank at that depth', (t) => {
  // 10 steps of 1 s at depth 4; depth 2 takes 0.5 s x (1+rho(r))/(1+rho(8)) per step.
  const p = pickBudget(base({ roundSeconds: 6 }));
  t.like(p, { depth: 2, rank: 8, outcome: 'fits' });
  t.true(p.trainSeconds <= 6);
  // Just below depth 2's rank-8 prediction (5 s), a smaller rank at depth 2 fits, before depth 1 is considered.
  const q = pickBudget(base({ roundSeconds: 4.9 }));
  t.is(q.depth, 2);
  t.true(q.rank < 8, `rank ${q.rank}`);
  t.true(q.trainSeconds <= 4.9);
  // Without a rank-heterogeneous aggregator the rank stays at the bound, so depth drops instead.
  t.like(pickBudget(base({ roundSeconds: 4.9, rankFlexible: false })), { depth: 1, rank: 8, outcome: 'fits' });
});

test('bounds: never deeper than --max-depth nor wider than --rank; nothing fits gives the smallest budget', (t) => {
  t.like(pickBudget(base({ maxDepth: 3 })), { depth: 3, rank: 8 });
  t.like(pickBudget(base({ maxRank: 4 })), { depth: 4, rank: 4 });
  const p = pickBudget(base({ roundSeconds: 1e-6 }));
  t.like(p, { depth: 1, rank: 1, outcome: 'none-fits' });
  t.regex(p.reason, /nothing fits/);
  t.regex(p.reason, /= 2\.0 s > 0\.000001 s/);
});

test('invalid or lying measurements: no throughput keeps the bounds; bad latencies fall back to linear depth; noisy ones are made monotone', (t) => {
  for (const trainThroughput of [0, -5, Number.NaN, Number.POSITIVE_INFINITY]) {
    const p = pickBudget(base({ roundSeconds: 0.001, measurement: { trainThroughput, rank: 8, exitLatencyMs64: [1, 2, 3, 4] } }));
    t.like(p, { depth: 4, rank: 8, outcome: 'unmeasured' }, String(trainThroughput));
    t.regex(p.reason, /no usable training-speed measurement/);
  }
  t.like(pickBudget(base({ measurement: null })), { depth: 4, rank: 8, outcome: 'unmeasured' });
  for (const lat of [[], [1, 2, 3], [1, 2, Number.NaN, 4], [0, 1, 2, 3], [1, 2, 3, -4]]) {
    const p = pickBudget(base({ roundSeconds: 6, measurement: { trainThroughput: 64, rank: 8, exitLatencyMs64: lat } }));
    t.like(p, { depth: 2, depthModel: 'linear' }, JSON.stringify(lat));
    t.regex(p.reason, /scaled by 2\/4/);
  }
  // A shallow exit reported slower than the deeper ones: the running maximum makes f non-decreasing, f(D) = 1.
  t.deepEqual(depthFractions([4, 1, 2, 8], 4), { f: [0.5, 0.5, 0.5, 1], model: 'measured' });
  // An absurdly fast claim only means everything fits (the bounds still hold).
  t.like(pickBudget(base({ measurement: { trainThroughput: 1e300, rank: 8, exitLatencyMs64: [1, 2, 3, 4] } })), { depth: 4, rank: 8, outcome: 'fits' });
});

test('invalid targets and bounds are typed errors', (t) => {
  for (const o of [{ roundSeconds: 0 }, { roundSeconds: Number.NaN }, { localSteps: 0 }, { batch: -1 }, { maxRank: 0 }, { maxDepth: 0 }, { maxDepth: 5 }, { maxDepth: 1.5 }]) {
    t.throws(() => pickBudget(base(o)), { instanceOf: BudgetError }, JSON.stringify(o));
  }
});
