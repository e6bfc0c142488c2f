import test from 'ava';
import { Rng } from '../../src/util/rng.ts';

test('same seed gives the same stream, different seeds differ', (t) => {
  const a = new Rng(42);
  const b = new Rng(42);
  const c = new Rng(43);
  const sa = Array.from({ length: 8 }, () => a.nextU32());
  const sb = Array.from({ length: 8 }, () => b.nextU32());
  const sc = Array.from({ length: 8 }, () => c.nextU32());
  t.deepEqual(sa, sb);
  t.notDeepEqual(sa, sc);
});

test('uniform, normal and dirichlet have the right moments', (t) => {
  const r = new Rng(7);
  const n = 20000;
  let su = 0, sn = 0, sn2 = 0;
  for (let i = 0; i < n; i++) {
    const u = r.next();
    t.true(u >= 0 && u < 1);
    su += u;
    const z = r.normal();
    sn += z;
    sn2 += z * z;
  }
  t.true(Math.abs(su / n - 0.5) < 0.01);
  t.true(Math.abs(sn / n) < 0.03);
  t.true(Math.abs(sn2 / n - 1) < 0.05);
  const d = r.dirichlet(0.5, 10);
  t.true(Math.abs(d.reduce((x, y) => x + y, 0) - 1) < 1e-12);
});

test('shuffle is a permutation', (t) => {
  const a = Int32Array.from({ length: 100 }, (_, i) => i);
  new Rng(1).shuffle(a);
  t.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
});
