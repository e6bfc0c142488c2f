import test from 'ava';
import { checkFederationConfig, roundOptionsOf } from '../../src/round/fl-config.ts';
import { roundDeadlineMs } from '../../src/round/leader-schedule.ts';
import { ArrivalTracker } from '../../src/round/verify.ts';
import { autoLocalSteps } from '../../src/round/auto-steps.ts';
import { advertisedCapabilities, measureOptionsOfFl, type MeasuredCapabilities } from '../../src/node/capabilities.ts';
import { CapabilitiesSchema } from '../../src/node/config.ts';
import { emulatedPauseMs, MAX_EMULATED_SLOWDOWN, Trainer } from '../../src/train/trainer.ts';
import { parseSimulatorArgs } from '../../scripts/lib/sim-config.ts';
import { parseFleet } from '../../scripts/lib/fleet.ts';
import { VIT_TINY } from '../../src/model/vit.ts';
import { ConfigError } from '../../src/util/errors.ts';

test('--emulate-slowdown: defaults to 1 (off), accepts [1, 100], refuses the rest with a ConfigError naming the flag', (t) => {
  t.is(checkFederationConfig({}).emulateSlowdown, 1);
  t.is(checkFederationConfig({ emulateSlowdown: 3 }).emulateSlowdown, 3);
  t.is(checkFederationConfig({ emulateSlowdown: MAX_EMULATED_SLOWDOWN }).emulateSlowdown, MAX_EMULATED_SLOWDOWN);
  for (const bad of [0.5, 0, -3, MAX_EMULATED_SLOWDOWN + 1, Number.NaN, Number.POSITIVE_INFINITY, '3']) {
    t.throws(() => checkFederationConfig({ emulateSlowdown: bad }), { instanceOf: ConfigError, message: /--emulate-slowdown \/ fl\.emulateSlowdown/ }, String(bad));
  }
  t.is(parseSimulatorArgs(['--emulate-slowdown', '3']).fl.emulateSlowdown, 3, 'a simulator flag too (one schema)');
});

test('Trainer refuses a slowdown outside [1, 100] before building anything; the pause makes a step slowdown times as long', async (t) => {
  for (const slowdown of [0.5, Number.NaN, 101]) {
    await t.throwsAsync(Trainer.create({ cfg: VIT_TINY, lora: null, trainableSet: 'heads', weights: new Map(), slowdown }), { instanceOf: ConfigError, message: /slowdown/ });
  }
  t.is(emulatedPauseMs(3, 40), 80, 'compute 40 ms + pause 80 ms = 3 x 40 ms');
  t.is(emulatedPauseMs(1, 40), 0);
  t.is(emulatedPauseMs(2.5, 10), 15);
  t.is(emulatedPauseMs(3, 0), 0);
});

test('the start-up speed measurement is slowed like training, and a node measured at a third trains fewer local steps', (t) => {
  t.is(measureOptionsOfFl({ emulateSlowdown: 3 }).slowdown, 3);
  t.is(measureOptionsOfFl({}).slowdown, 1);
  const measured = (trainThroughput: number): MeasuredCapabilities => ({
    device: 'cpu', trainThroughput, trainBatch: 32, trainSteps: 3, exitLatencyMs: { batch1: [0.3, 0.6, 0.9, 1.2], batch64: [1, 2, 3, 4] }, exits: 4, backbone: 'b', ms: 1,
  });
  const declared = CapabilitiesSchema.parse({});
  const full = advertisedCapabilities(declared, measured(300), { trains: true, rank: 8 }).trainThroughput;
  const edge = advertisedCapabilities(declared, measured(100), { trains: true, rank: 4, maxExits: 2 }).trainThroughput;
  const E = 50;
  t.is(autoLocalSteps(E, full, [full, edge, edge]), E, 'the full node trains --local-steps');
  const steps = autoLocalSteps(E, edge, [full, full, edge]);
  t.true(steps < E);
  t.is(steps, 17, 'a third of the speed: round(50 / 3) steps');
});

test('--deadline fixed: the leader always waits --round-timeout-ms; adaptive follows the arrival delays', (t) => {
  const arrivals = new ArrivalTracker();
  for (const ms of [900, 1000, 1100, 1200]) arrivals.record(ms);
  const adaptive = roundOptionsOf(checkFederationConfig({ roundTimeoutMs: 30_000 }));
  const fixed = roundOptionsOf(checkFederationConfig({ roundTimeoutMs: 30_000, deadline: 'fixed' }));
  t.is(roundDeadlineMs(arrivals, adaptive), 2400, 'p90 (1200 ms) x 2');
  t.is(roundDeadlineMs(arrivals, fixed), 30_000);
  t.throws(() => checkFederationConfig({ deadline: 'slow' }), { instanceOf: ConfigError, message: /--deadline \/ fl\.deadline: must be one of adaptive, fixed/ });
});

test('--fleet: the throttled edge profile (nodes/fleet-edge-slow.json) carries its slowdown to its nodes only', async (t) => {
  const groups = await parseFleet('2:edge-slow,2:full');
  t.deepEqual(groups[0].budget, { maxDepth: 2, rank: 4, globalRank: 8, emulateSlowdown: 3 });
  t.deepEqual(groups[1].budget, { rank: 8, globalRank: 8 });
});
