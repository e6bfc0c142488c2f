/**
 * Gossip averaging (CHOCO-SGD) across real libp2p nodes: no leader; models stay close (consensus distance under
 * a stated bound) while every node trains on its own non-IID shard, over several topologies.
 */
import test from 'ava';
import { startMeshes, stopAll, link, topologies, waitFor, viewsConverged } from './mesh-helpers.ts';
import { createFeds, releaseAll, tinyFl } from './fed-helpers.ts';
import { averagingWeights, SAMPLE_WEIGHT_CAP } from '../../src/round/gossip.ts';

const N = 4;
/** Bound on the per-element mean squared spread of the public models a node holds around their average. */
const CONSENSUS_BOUND = 1e-3;

for (const [name, edges] of Object.entries({ ring: topologies.ring(N), star: topologies.star(N), line: topologies.line(N) })) {
  test.serial(`gossip averaging, ${name}: consensus distance stays under ${CONSENSUS_BOUND} and models agree`, async (t) => {
    const meshes = await startMeshes(N);
    t.teardown(() => stopAll(meshes));
    link(meshes, edges);
    await waitFor(() => viewsConverged(meshes), 'membership views');
    const feds = await createFeds(meshes, (i) => tinyFl(i, N, { protocol: 'gossip', rounds: 3, gossipGamma: 0.5, topk: 0.25, bits: 8 }));
    t.teardown(() => releaseAll(feds));
    const init = new Map([...feds[0].protocol.model()].map(([k, v]) => [k, Float32Array.from(v)]));
    const metrics = await Promise.all(feds.map((f) => f.run()));
    for (const m of metrics) {
      t.deepEqual(m.map((x) => x.round), [1, 2, 3]);
      t.true(m.every((x) => x.via === 'mixed' && x.contributors === N - 1), `every round mixed with all live peers: ${m.map((x) => x.contributors).join(',')}`);
      t.true(m[m.length - 1].consensusDistance! < CONSENSUS_BOUND, `consensus distance ${m[m.length - 1].consensusDistance}`);
    }
    // The nodes' final models are closer to their average than that average is to the initial model (without
    // mixing, non-IID local training makes the spread exceed the mean movement, by about sqrt(N)).
    const models = feds.map((f) => f.protocol.model());
    let spreadSq = 0;
    let movedSq = 0;
    for (const [k, v0] of init) {
      for (let i = 0; i < v0.length; i++) {
        const vals = models.map((m) => m.get(k)![i]);
        const mean = vals.reduce((a, b) => a + b, 0) / N;
        for (const v of vals) spreadSq += (v - mean) ** 2 / N;
        movedSq += (mean - v0[i]) ** 2;
      }
    }
    t.log(`spread ${Math.sqrt(spreadSq).toFixed(4)} moved ${Math.sqrt(movedSq).toFixed(4)}`);
    t.true(Math.sqrt(spreadSq) < Math.sqrt(movedSq), `disagreement ${Math.sqrt(spreadSq)} vs movement ${Math.sqrt(movedSq)}`);
  });
}

test.serial('gossip averaging with the default gamma 0: every node serves the same sample-weighted average of the public models', async (t) => {
  const meshes = await startMeshes(N);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.ring(N));
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const feds = await createFeds(meshes, (i) => tinyFl(i, N, { protocol: 'gossip', rounds: 3, topk: 0.25, bits: 8 }));
  t.teardown(() => releaseAll(feds));
  const init = new Map([...feds[0].protocol.model()].map(([k, v]) => [k, Float32Array.from(v)]));
  const metrics = await Promise.all(feds.map((f) => f.run()));
  for (const m of metrics) t.true(m.every((x) => x.via === 'mixed' && x.contributors === N - 1));
  const models = feds.map((f) => f.protocol.model());
  let maxDiff = 0;
  let moved = 0;
  for (const [k, v0] of init) {
    for (let i = 0; i < v0.length; i++) {
      for (const m of models) maxDiff = Math.max(maxDiff, Math.abs(m.get(k)![i] - models[0].get(k)![i]));
      moved = Math.max(moved, Math.abs(models[0].get(k)![i] - v0[i]));
    }
  }
  t.log(`max difference between nodes ${maxDiff.toExponential(2)}, largest move ${moved.toExponential(2)}`);
  t.true(moved > 1e-3, 'the model trained');
  t.true(maxDiff < 1e-5, `nodes disagree by ${maxDiff}`);

  // Default gossip momentum 0.6 (heavy ball): the next round would train from m_t + 0.6·(m_t − m_{t−1}).
  const p = feds[0].protocol as unknown as { prevStart: { tensors: Map<string, Float32Array> }; trainingStart(): Map<string, Float32Array>; model(): Map<string, Float32Array> };
  const prev = p.prevStart.tensors;
  const m = p.model();
  const y = p.trainingStart();
  let step = 0;
  let err = 0;
  for (const [k, mk] of m) {
    for (let i = 0; i < mk.length; i++) {
      step = Math.max(step, Math.abs(mk[i] - prev.get(k)![i]));
      err = Math.max(err, Math.abs(y.get(k)![i] - (mk[i] + 0.6 * (mk[i] - prev.get(k)![i]))));
    }
  }
  t.true(step > 1e-4, 'the average moved in the last round');
  t.true(err < 1e-6, `training start is the heavy-ball extrapolation (max error ${err})`);
});

test.serial('gossip momentum 0: every round trains from the averaged model itself', async (t) => {
  const meshes = await startMeshes(2);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.ring(2));
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const feds = await createFeds(meshes, (i) => tinyFl(i, 2, { protocol: 'gossip', rounds: 2, gossipMomentum: 0 }));
  t.teardown(() => releaseAll(feds));
  await Promise.all(feds.map((f) => f.run()));
  const m = feds[0].protocol.model();
  const y = feds[0].protocol.trainingStart();
  for (const [k, v] of m) t.deepEqual([...y.get(k)!], [...v]);
});

test('averaging weights: sample counts, capped at SAMPLE_WEIGHT_CAP x the median; bad counts weigh as the median', (t) => {
  const close = (a: number[], b: number[]): void => a.forEach((v, i) => t.true(Math.abs(v - b[i]) < 1e-12, `${a} vs ${b}`));
  close(averagingWeights([1, 1, 2]), [0.25, 0.25, 0.5]);
  close(averagingWeights([10, 10, 10, 1e9]), [10, 10, 10, 10 * SAMPLE_WEIGHT_CAP].map((x) => x / (30 + 10 * SAMPLE_WEIGHT_CAP)));
  close(averagingWeights([0, 5, Number.NaN, 5]), [0.25, 0.25, 0.25, 0.25]);
});
