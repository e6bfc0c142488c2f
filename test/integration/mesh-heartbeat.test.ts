import test from 'ava';
import { Heartbeat } from '../../src/mesh/pb/membership.ts';
import { Envelope } from '../../src/mesh/pb/envelope.ts';
import { HEARTBEAT_FULL_EVERY, MEMBERSHIP_TOPIC, RefusalReason, WIRE_VERSION, type Mesh } from '../../src/mesh/index.ts';
import { startMeshes, stopAll, link, waitFor, viewsConverged, topologies } from './mesh-helpers.ts';

/** Decode every membership heartbeat `m` accepts from `from` (full and light), from gossipsub's accepted-message event. */
function tap(m: Mesh, from: string): Heartbeat[] {
  const got: Heartbeat[] = [];
  m.libp2p.services.pubsub.addEventListener('gossipsub:message', (evt) => {
    const { msg } = evt.detail;
    if (msg.topic !== m.topicId(MEMBERSHIP_TOPIC) || msg.type !== 'signed' || msg.from.toString() !== from) return;
    const env = Envelope.decode(msg.data);
    if (env.inline !== undefined) got.push(Heartbeat.decode(env.inline));
  });
  return got;
}

test.serial('light heartbeats keep a member alive with its full capabilities; most heartbeats are light', async (t) => {
  const meshes = await startMeshes(3);
  t.teardown(async () => stopAll(meshes));
  const a = meshes[0].peerId.toString();
  const seen = tap(meshes[2], a);
  link(meshes, topologies.line(3));
  await waitFor(() => viewsConverged(meshes), 'views converge over a line (light beats relayed through the middle)');
  meshes[0].membership.setCapabilities({ device: 'cuda', datasetSize: 1234, features: ['train'] });
  await waitFor(() => meshes[2].membership.get(a)?.capabilities.device === 'cuda', 'the capability change reaches the far end');
  const n0 = seen.length;
  await waitFor(() => seen.length >= n0 + 2 * HEARTBEAT_FULL_EVERY, 'two full cycles of heartbeats');
  const later = seen.slice(n0);
  const light = later.filter((h) => h.capabilities === undefined);
  t.true(light.length >= later.length - Math.ceil(later.length / HEARTBEAT_FULL_EVERY) - 1, `${light.length} of ${later.length} light`);
  t.true(light.every((h) => h.addrs.length === 0 && h.protocolVersion === ''));
  // After light beats the view still holds the capabilities and addresses of the last full one.
  const m = meshes[2].membership.get(a)!;
  t.is(m.capabilities.device, 'cuda');
  t.is(m.capabilities.datasetSize, 1234);
  t.true(m.addrs.length > 0);
  t.true(m.seq >= later.at(-1)!.seq - 1n);
});

test.serial('a light heartbeat carrying addresses is refused INVALID_FIELD; an unknown sender is not added by one', async (t) => {
  const meshes = await startMeshes(2);
  t.teardown(async () => stopAll(meshes));
  link(meshes, [[0, 1]]);
  await waitFor(() => viewsConverged(meshes), 'views converge');
  const before = meshes[1].refusalCount(RefusalReason.INVALID_FIELD);
  const bad = Heartbeat.encode({
    version: WIRE_VERSION, peerId: meshes[0].peerId.toMultihash().bytes, seq: BigInt(Date.now()) * 1000n + 10_000_000n,
    timestampMs: BigInt(Date.now()), addrs: ['/ip4/1.2.3.4/tcp/1'], protocolVersion: '', leaving: false,
  });
  await meshes[0].publish(MEMBERSHIP_TOPIC, bad);
  await waitFor(() => meshes[1].refusalCount(RefusalReason.INVALID_FIELD) > before, 'the malformed light heartbeat is refused');
  t.pass();

  // A third node whose only heartbeats are light never enters the view.
  const [c] = await startMeshes(1);
  t.teardown(async () => c.stop().catch(() => {}));
  await c.membership.stop();
  // Its start-up (full) heartbeat is out of gossipsub's message cache and past the expiry (STALE) before it links.
  await new Promise((r) => setTimeout(r, 2500));
  const joins: string[] = [];
  meshes[1].membership.on('join', (m: { peerId: string }) => joins.push(m.peerId));
  meshes[1].addPeer(c.multiaddrs()[0]);
  await waitFor(() => c.topicPeers(MEMBERSHIP_TOPIC).includes(meshes[1].peerId.toString()), 'c sees node 1 on the membership topic');
  for (let k = 1; k <= 3; k++) {
    await c.publish(MEMBERSHIP_TOPIC, Heartbeat.encode({
      version: WIRE_VERSION, peerId: c.peerId.toMultihash().bytes, seq: BigInt(Date.now()) * 1000n + BigInt(k),
      timestampMs: BigInt(Date.now()), addrs: [], protocolVersion: '', leaving: false,
    }));
    await new Promise((r) => setTimeout(r, 200));
  }
  await new Promise((r) => setTimeout(r, 500));
  t.false(joins.includes(c.peerId.toString()));
  t.is(meshes[1].membership.get(c.peerId.toString()), undefined);
});
