/**
 * Gossip averaging (CHOCO-SGD) across real libp2p nodes: no leader; models stay close (consensus distance under
 * a stated bound) while every node trains on its own non-IID shard, over several topologies.
 */
import test from 'ava';
import { startMeshes, stopAll, link, topologies, waitFor, viewsConverged } from './mesh-helpers.ts';
import { createFeds, releaseAll, tinyFl } from './fed-helpers.ts';

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
