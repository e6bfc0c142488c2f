import test from 'ava';
import { parseFleet } from '../../scripts/lib/fleet.ts';

test('--fleet: a group whose profile sizes itself (nodes/fleet-auto.json) carries budget auto and its target to each node', async (t) => {
  const groups = await parseFleet('2:auto,2:edge');
  t.deepEqual(groups.map((g) => [g.name, g.count]), [['auto', 2], ['edge', 2]]);
  t.deepEqual(groups[0].budget, { budget: 'auto', roundSeconds: 30, rank: 8, globalRank: 8 });
  t.deepEqual(groups[1].budget, { maxDepth: 2, rank: 4, globalRank: 8 });
  t.is(groups[0].aggregator, 'hetlora-zero');
});
