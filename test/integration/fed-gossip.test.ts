/**
 * Gossip averaging (CHOCO-SGD) across real libp2p nodes: no leader; models stay close (consensus distance under
 * a stated bound) while every node trains on its own non-IID shard, over several topologies.
 */
import test from 'ava';
import { startMeshes, stopAll, link, topologies, waitFor, viewsConverged } from './mesh-helpers.ts';
import { createFeds, releaseAll, tinyFl } from './fed-helpers.ts';

const N = 4;
/** Bound on the per-element mean squared distance between a node's model and the average of its replicas. */
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
      t.true(m.every((x) => x.via === 'mixed' && x.contributors === N - 1), 'every round mixed with all live peers');
      t.true(m[m.length - 1].consensusDistance! < CONSENSUS_BOUND, `consensus distance ${m[m.length - 1].consensusDistance}`);
    }
    // Pairwise, the final models are much closer to each other than to the initial model.
    const models = feds.map((f) => f.protocol.model());
    let spread = 0;
    let moved = 0;
    for (const [k, v0] of models[0]) {
      for (let i = 0; i < v0.length; i++) {
        const vals = models.map((m) => m.get(k)![i]);
        spread = Math.max(spread, Math.max(...vals) - Math.min(...vals));
        moved = Math.max(moved, Math.abs(vals[0] - init.get(k)![i]));
      }
    }
    t.true(moved > 10 * spread, `the models trained (moved ${moved}) far more than they disagree (${spread})`);
    t.true(spread < 0.05, `largest disagreement between nodes ${spread}`);
  });
}
