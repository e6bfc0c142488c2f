import test from 'ava';
import { autoLocalSteps, AUTO_STEPS_MAX_THROUGHPUT } from '../../src/round/auto-steps.ts';
import { throughputAtDepth } from '../../src/node/capabilities.ts';

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

test('throughputAtDepth: a depth-k node advertises its full-depth throughput over the measured forward share up to exit k, so --local-steps-auto rates it at the depth it trains', (t) => {
  const m = { device: 'cpu' as const, trainThroughput: 300, trainBatch: 32, trainSteps: 3, exits: 4, backbone: 'vit-tiny', ms: 1, exitLatencyMs: { batch1: [1, 2, 3, 4], batch64: [10, 20, 30, 40] } };
  t.is(throughputAtDepth(m, 4), 300, 'full depth: as measured');
  t.is(throughputAtDepth(m, 2), 600, 'half the forward latency: twice the samples per second');
  t.is(throughputAtDepth({ ...m, exitLatencyMs: { batch1: [], batch64: [] } }, 1), 1200, 'no usable latencies: linear k / D');
  t.is(throughputAtDepth(null, 2), null);
  t.is(throughputAtDepth({ ...m, trainThroughput: 0 }, 2), null, 'not measured');
  // A depth-2 node measured at a third of a full node's speed at full depth is 2/3 as fast at its own depth.
  const slow = throughputAtDepth({ ...m, trainThroughput: 100 }, 2)!;
  t.is(autoLocalSteps(30, 100, [300]), 10, 'rated at full depth: a third of the steps');
  t.is(autoLocalSteps(30, slow, [300]), 20, 'rated at its depth: two thirds');
});
