import test from 'ava';
import type { Mesh } from '../../src/mesh/index.ts';
import { startMeshes, stopAll, link, waitFor, viewsConverged, topologies } from './mesh-helpers.ts';

test.serial('partition into two halves, then heal: views split, then converge again', async (t) => {
  const n = 6;
  const meshes: Mesh[] = await startMeshes(n);
  t.teardown(async () => stopAll(meshes));
  // Ring plus one chord, so each half stays internally connected after the cut.
  link(meshes, [...topologies.ring(n), [0, 3]]);
  await waitFor(() => viewsConverged(meshes), 'initial convergence');

  const a = [0, 1, 2];
  const b = [3, 4, 5];
  const ids = (g: number[]): string[] => g.map((i) => meshes[i].peerId.toString());
  await Promise.all([...a.map(async (i) => meshes[i].block(ids(b))), ...b.map(async (i) => meshes[i].block(ids(a)))]);
  await waitFor(() => viewsConverged(meshes, a) && viewsConverged(meshes, b), 'each half sees only itself');
  for (const i of a) t.deepEqual(meshes[i].membership.memberIds(), ids(a).filter((x) => x !== meshes[i].peerId.toString()).sort());
  for (const i of a) for (const j of b) t.false(meshes[i].connectedPeers().includes(meshes[j].peerId.toString()));

  const rejoined: string[] = [];
  meshes[0].membership.on('join', (m: { peerId: string }) => rejoined.push(m.peerId));
  for (const i of a) meshes[i].unblock(ids(b));
  for (const i of b) meshes[i].unblock(ids(a));
  await waitFor(() => viewsConverged(meshes), 'views converge after the heal (configured peers redialled)');
  t.true(ids(b).every((id) => rejoined.includes(id)), 'node 0 saw every node of the other half join again');
});

test.serial('a node that stops cleanly says goodbye: every view drops it as "left", before any expiry', async (t) => {
  // Expiry far longer than the test deadline, so only the goodbye heartbeat can remove the node.
  const meshes: Mesh[] = await startMeshes(4, { memberExpiryMs: 120_000 });
  t.teardown(async () => stopAll(meshes));
  link(meshes, topologies.line(4));
  await waitFor(() => viewsConverged(meshes), 'initial convergence');
  const leaver = meshes[3].peerId.toString();
  const reasons: string[][] = meshes.map(() => []);
  meshes.forEach((m, i) => m.membership.on('leave', (mm: { peerId: string }, why: string) => void (mm.peerId === leaver && reasons[i].push(why))));
  await meshes[3].stop();
  await waitFor(() => viewsConverged(meshes, [0, 1, 2]), 'the leaver disappears from every view', 20_000);
  t.deepEqual(reasons.slice(0, 3), [['left'], ['left'], ['left']]);
});

test.serial('a node that crashes (no goodbye) expires from every view', async (t) => {
  const meshes: Mesh[] = await startMeshes(4);
  t.teardown(async () => stopAll(meshes));
  link(meshes, topologies.full(4));
  await waitFor(() => viewsConverged(meshes), 'initial convergence');
  const reasons: string[] = [];
  const crashed = meshes[3].peerId.toString();
  meshes[0].membership.on('leave', (m: { peerId: string }, why: string) => void (m.peerId === crashed && reasons.push(why)));
  await meshes[3].libp2p.stop(); // skips the goodbye heartbeat
  await waitFor(() => viewsConverged(meshes, [0, 1, 2]), 'the crashed node expires');
  t.deepEqual(reasons, ['expired']);
  t.false(meshes[1].membership.memberIds().includes(crashed));
});

test.serial('a dropped configured link is redialled with backoff', async (t) => {
  const meshes: Mesh[] = await startMeshes(2);
  t.teardown(async () => stopAll(meshes));
  link(meshes, [[0, 1]]);
  await waitFor(() => meshes[1].connectedPeers().length === 1, 'first connection');
  await meshes[1].libp2p.hangUp(meshes[0].peerId);
  await waitFor(() => meshes[1].connectedPeers().includes(meshes[0].peerId.toString()), 'node 1 redials node 0');
  await waitFor(() => viewsConverged(meshes), 'views converge');
  t.deepEqual(meshes[1].connectedPeers(), [meshes[0].peerId.toString()]);
});
