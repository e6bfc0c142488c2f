/**
 * Rotating-leader federation across real libp2p nodes on 127.0.0.1 with a tiny ViT trained through
 * onnxruntime: every topology ends with the identical global state on every node.
 */
import test from 'ava';
import { startMeshes, stopAll, link, topologies, waitFor, viewsConverged } from './mesh-helpers.ts';
import { createFeds, finalHashes, releaseAll, runAll, tinyFl } from './fed-helpers.ts';

const N = 4;
const TOPOLOGIES: Record<string, Array<[number, number]>> = {
  line: topologies.line(N),
  ring: topologies.ring(N),
  star: topologies.star(N),
  full: topologies.full(N),
  'random-k': [[0, 1], [0, 2], [1, 3], [2, 3], [1, 2]],
};

for (const [name, edges] of Object.entries(TOPOLOGIES)) {
  test.serial(`leader protocol, ${name}: every node applies every round once and ends with the same global state`, async (t) => {
    const meshes = await startMeshes(N);
    t.teardown(() => stopAll(meshes));
    link(meshes, edges);
    await waitFor(() => viewsConverged(meshes), 'membership views');
    const feds = await createFeds(meshes, (i) => tinyFl(i, N, { rounds: 2 }));
    t.teardown(() => releaseAll(feds));
    const metrics = await runAll(feds);
    const hashes = finalHashes(feds);
    t.is(new Set(hashes).size, 1, `final hashes ${hashes.map((h) => h.slice(0, 8)).join(' ')}`);
    for (const m of metrics) {
      t.deepEqual(m.map((x) => x.version), [1, 2], 'versions advance by one per round, none repeated');
      t.true(m.every((x) => x.accuracy.length === 2 && x.accuracy.every((a) => a >= 0 && a <= 1)));
    }
    // Each round has exactly one publisher of the applied global, and some node led it.
    for (let r = 0; r < 2; r++) {
      const vias = metrics.map((m) => m[r].via);
      t.true(vias.includes('led'), `round ${r + 1}: ${vias.join(',')}`);
      t.true(metrics.every((m) => m[r].hash === metrics[0][r].hash), 'identical state after every round');
    }
    t.true(metrics[0][0].bytesUp > 0 && metrics[0][0].bytesDown > 0);
    // Global prototypes merge every node's classes (count-weighted), not just one class.
    const protos = feds[0].protocol.prototypes();
    t.is(protos.length, 2, 'one prototype table per exit');
    t.true(protos[0].counts.filter((c) => c > 0).length >= 5, `classes with a prototype: ${protos[0].counts.join(',')}`);
  });
}

test.serial('leader protocol with fedavgm and a decaying server learning rate: rotating leaders continue one server-momentum buffer that every member holds', async (t) => {
  const meshes = await startMeshes(N);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.full(N));
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const feds = await createFeds(meshes, (i) => tinyFl(i, N, { rounds: 3, aggregator: 'fedavgm', serverLr: 1.5, serverMomentum: 0.5, serverLrDecay: true, lrSchedule: 'cosine' }));
  t.teardown(() => releaseAll(feds));
  const metrics = await runAll(feds);
  t.is(new Set(finalHashes(feds)).size, 1);
  const leaders = new Set(metrics.flatMap((m) => m.filter((x) => x.via === 'led').map((x) => x.node + x.round)));
  t.is(leaders.size, 3, 'one led round per round');
  // Every member's momentum buffer is the last applied step divided by the server learning rate.
  const bufs = feds.map((f) => f.protocol.snapshot().serverOpt);
  t.true(bufs.every((b) => b !== undefined && b.m.size > 0));
  for (const b of bufs.slice(1)) {
    for (const [k, v] of bufs[0]!.m) t.deepEqual(Array.from(b!.m.get(k)!), Array.from(v), k);
  }
  const anyNonZero = [...bufs[0]!.m.values()].some((v) => v.some((x) => x !== 0));
  t.true(anyNonZero, 'the buffer holds the last step');
  // The cosine local schedule spans all rounds: it reaches zero at the last step of the last round.
  for (const f of feds) t.is(f.trainer.optimizer.lr, 0);
});
