import test from 'ava';
import { lrAt } from '../../src/train/schedule.ts';
import { ConfigError } from '../../src/util/errors.ts';

test('cosine schedule: warm-up ramps linearly, then decays from base to zero at the last step', (t) => {
  const base = 2e-3;
  t.is(lrAt('constant', base, 17, 100), base);
  t.is(lrAt('cosine', base, 0, 100, 4), base / 4);
  t.is(lrAt('cosine', base, 3, 100, 4), base);
  t.true(Math.abs(lrAt('cosine', base, 4, 100, 4) - base) < 1e-15, 'first step after warm-up at base');
  t.true(Math.abs(lrAt('cosine', base, 99, 100, 4)) < 1e-15, 'last step at zero');
  t.true(Math.abs(lrAt('cosine', base, 4 + 48, 101, 4) - base / 2) < 1e-12, 'half-way at base / 2');
  let prev = Infinity;
  for (let s = 4; s < 100; s++) {
    const lr = lrAt('cosine', base, s, 100, 4);
    t.true(lr <= prev, `non-increasing at ${s}`);
    prev = lr;
  }
});

test('schedule arguments are validated', (t) => {
  for (const f of [() => lrAt('linear' as never, 1, 0, 10), () => lrAt('cosine', 0, 0, 10), () => lrAt('cosine', 1, 0, 0), () => lrAt('cosine', 1, 0, 10, 10), () => lrAt('cosine', 1, -1, 10)]) {
    t.throws(f, { instanceOf: ConfigError });
  }
});
