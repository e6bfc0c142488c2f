/** Leader scheduling (src/round/leader-schedule.ts): quorum, who may aggregate, slot opening, server-lr decay. */
import test from 'ava';
import { aggregatorOptionsFor, canRecompute, certificateNeed, mayAggregate, roundNeed, slotOpen, type SlotClock } from '../../src/round/leader-schedule.ts';
import { leaderOrder, MAX_LEADER_RANKS } from '../../src/round/index.ts';

test('quorum: a roster majority by default, ceil(q x roster) with --quorum, never below one', (t) => {
  t.deepEqual([1, 2, 4, 5, 8].map((r) => roundNeed(r, undefined)), [1, 2, 3, 3, 5]);
  t.is(roundNeed(8, 0.25), 2);
  t.is(roundNeed(8, 1), 8);
  t.is(roundNeed(3, 0.01), 1);
  t.is(certificateNeed(['a', 'b', 'c', 'd', 'e'], 2), 3, 'with a roster: a majority of it, whatever the view');
  t.is(certificateNeed(undefined, 5), 3, 'open mesh: a majority of the other live members');
});

test('only the first MAX_LEADER_RANKS of the order over the live members may aggregate; outsiders never', (t) => {
  const members = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6'];
  const order = leaderOrder('f', 2, members);
  order.forEach((p, k) => t.is(mayAggregate('f', 2, members, p), k < MAX_LEADER_RANKS, `rank ${k}`));
  t.false(mayAggregate('f', 2, members, 'outsider'));
});

test('slots: rank 0 at once; rank k after deadline + k leader timeouts from publishing, or when every lower rank is faulty', (t) => {
  const order = ['a', 'b', 'c'];
  const faulty = new Set<string>();
  const clock = (now: number, current: SlotClock['current'] = { round: 4, publishedAt: 1000 }): SlotClock => ({
    current, deadlineMs: 500, leaderTimeoutMs: 100, now, isFaulty: (r, p) => r === 4 && faulty.has(p),
  });
  t.true(slotOpen(4, 0, order, clock(0)));
  t.false(slotOpen(4, 1, order, clock(1599)));
  t.true(slotOpen(4, 1, order, clock(1600)));
  t.false(slotOpen(4, 2, order, clock(1600)));
  t.true(slotOpen(4, 2, order, clock(1700)));
  t.false(slotOpen(4, 1, order, clock(10_000, { round: 3, publishedAt: 0 })), 'not before this node published for the round');
  faulty.add('a');
  t.true(slotOpen(4, 1, order, clock(0)), 'rank 0 faulty: rank 1 at once');
  t.false(slotOpen(4, 2, order, clock(0)));
  faulty.add('b');
  t.true(slotOpen(4, 2, order, clock(0)));
});

test('server-lr decay: serverLr in round 1, 1 in the last; untouched without decay or serverLr', (t) => {
  const o = { aggregatorOptions: { serverLr: 3 }, serverLrDecay: { rounds: 5 } };
  t.is(aggregatorOptionsFor(o, 1).serverLr, 3);
  t.is(aggregatorOptionsFor(o, 5).serverLr, 1);
  const mid = aggregatorOptionsFor(o, 3).serverLr!;
  t.true(mid > 1 && mid < 3);
  t.is(aggregatorOptionsFor({ aggregatorOptions: { serverLr: 3 } }, 4).serverLr, 3);
  t.deepEqual(aggregatorOptionsFor({ serverLrDecay: { rounds: 5 } }, 2), {});
});

test('recomputation needs cleartext inputs and, for stateful rules, the replicated server state', (t) => {
  t.true(canRecompute(false, true, 'fedavgm'));
  t.false(canRecompute(false, false, 'fedavgm'));
  t.true(canRecompute(false, false, 'median'));
  t.false(canRecompute(true, true, 'fedavg'));
});
