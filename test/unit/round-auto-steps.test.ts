import test from 'ava';
import { autoLocalSteps, AUTO_STEPS_MAX_THROUGHPUT } from '../../src/round/auto-steps.ts';

test('autoLocalSteps: steps follow measured speed against the fastest member, within [E/4, E]', (t) => {
  t.is(autoLocalSteps(50, 300, [100, 300, 150]), 50, 'the fastest trains --local-steps');
  t.is(autoLocalSteps(50, 100, [300, 150]), 17, 'a third of the speed: a third of the steps (rounded)');
  t.is(autoLocalSteps(50, 10, [300]), 13, 'never below a quarter (ceil)');
  t.is(autoLocalSteps(50, 0, [300]), 50, 'unmeasured: --local-steps');
  t.is(autoLocalSteps(50, 200, []), 50, 'alone');
  t.is(autoLocalSteps(3, 1, [1000]), 1, 'at least one step');
});

test('autoLocalSteps: lying peers are bounded (non-finite ignored, huge capped, a lie only lowers to the floor)', (t) => {
  t.is(autoLocalSteps(40, 100, [Number.NaN, Number.POSITIVE_INFINITY, -5, 0]), 40);
  t.is(autoLocalSteps(40, 100, [1e300]), 10);
  t.is(autoLocalSteps(40, AUTO_STEPS_MAX_THROUGHPUT * 10, [AUTO_STEPS_MAX_THROUGHPUT]), 40, 'capped values tie');
});
