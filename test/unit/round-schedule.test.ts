/** Leader scheduling (src/round/leader-schedule.ts): quorum, who may aggregate, slot opening, server-lr decay. */
import test from 'ava';
import { aggregatorOptionsFor, canRecompute, certificateNeed, mayAggregate, rankedMembers, roundNeed, slotOpen, waitingRanks, type SlotClock } from '../../src/round/leader-schedule.ts';
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

test('ranks are over the roster whatever the live view (an open mesh without one ranks its view)', (t) => {
  const roster = ['p1', 'p2', 'p3', 'p4', 'p5'];
  const order = leaderOrder('f', 7, roster);
  const view = roster.filter((p) => p !== order[0]);
  t.is(rankedMembers(roster, view), roster);
  t.true(mayAggregate('f', 7, rankedMembers(roster, view), order[0]), 'a rank-0 member that left the view keeps its rank');
  t.is(leaderOrder('f', 7, rankedMembers(roster, view)).indexOf(order[1]), 1, 'the next member stays rank 1, not rank 0');
  t.is(rankedMembers(undefined, view), view);
});

test('slots: rank 0 at once; rank k after deadline + k leader timeouts from publishing, or when every lower rank is faulty', (t) => {
  const order = ['a', 'b', 'c'];
  const faulty = new Set<string>();
  const clock = (now: number, current: SlotClock['current'] = { round: 4, publishedAt: 1000 }): SlotClock => ({
    current, deadlineMs: 500, leaderTimeoutMs: 100, now, isFaulty: (r, p) => r === 4 && faulty.has(p), isAlive: (p) => !down.has(p),
  });
  const down = new Set<string>();
  t.true(slotOpen(4, 0, order, clock(0)));
  t.false(slotOpen(4, 1, order, clock(1599)));
  t.true(slotOpen(4, 1, order, clock(1600)));
  t.false(slotOpen(4, 2, order, clock(1600)));
  t.true(slotOpen(4, 2, order, clock(1700)));
  t.false(slotOpen(4, 1, order, clock(10_000, { round: 3, publishedAt: 0 })), 'not before this node published for the round');
  faulty.add('a');
  t.true(slotOpen(4, 1, order, clock(0)), 'rank 0 faulty: rank 1 at once');
  t.false(slotOpen(4, 2, order, clock(0)));
  t.true(slotOpen(4, 2, order, clock(1600)), 'a faulty lower rank is skipped: one leader timeout less');
  faulty.add('b');
  t.true(slotOpen(4, 2, order, clock(0)));
});

test('slots skip lower ranks that are down; ranks themselves stay the roster\'s', (t) => {
  const order = ['a', 'b', 'c'];
  const down = new Set(['a']);
  const c: SlotClock = { current: { round: 4, publishedAt: 1000 }, deadlineMs: 500, leaderTimeoutMs: 100, now: 1000, isFaulty: () => false, isAlive: (p) => !down.has(p) };
  t.is(waitingRanks(4, 1, order, c), 0);
  t.true(slotOpen(4, 1, order, c), 'rank 0 down: rank 1 takes its slot');
  t.is(waitingRanks(4, 2, order, c), 1);
  t.false(slotOpen(4, 2, order, c));
  t.true(slotOpen(4, 2, order, { ...c, now: 1600 }), 'rank 2 waits one leader timeout past the deadline, for rank 1 only');
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
