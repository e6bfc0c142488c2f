/** The CLI's warning for rounds that ran with fewer updates than the federation's members (src/cli/federate.ts). */
import test from 'ava';
import { shortRoundWarnings } from '../../src/cli/federate.ts';

test('a short round warns when the shortfall starts or changes, not every round; full and synced rounds say nothing', (t) => {
  const w = shortRoundWarnings();
  t.is(w.next({ version: 1, via: 'led', contributors: 3 }, 3), null, 'full leader round');
  t.is(w.next({ version: 2, via: 'applied', contributors: 2 }, 3), "round 2 ran with 2 of 3 members' updates (the others were late or gone)");
  t.is(w.next({ version: 3, via: 'applied', contributors: 2 }, 3), null, 'same shortfall: no repeat');
  // The peer left and expired from the view: the expected count stays the federation's (e.g. n of --shard).
  t.is(w.next({ version: 4, via: 'led', contributors: 1 }, 2), "round 4 ran with 1 of 2 members' updates (the others were late or gone); training alone until they are back");
  t.is(w.next({ version: 5, via: 'led', contributors: 1 }, 2), null);
  t.is(w.next({ version: 6, via: 'synced', contributors: 0 }, 2), null, 'a pulled round is not a short round');
  t.is(w.next({ version: 7, via: 'led', contributors: 2 }, 2), null, 'back to full');
  t.regex(w.next({ version: 8, via: 'led', contributors: 1 }, 2) ?? '', /^round 8 ran with 1 of 2/, 'a new shortfall after a full round warns again');
  // Gossip counts the node itself and the neighbours it mixed.
  const g = shortRoundWarnings();
  t.is(g.next({ version: 1, via: 'mixed', contributors: 2 }, 3), null);
  t.regex(g.next({ version: 2, via: 'mixed', contributors: 0 }, 3) ?? '', /ran with 1 of 3 .*training alone/);
});
