/**
 * Issue 17: gossipsub opens its one outbound stream to a peer once and gives up when that fails; Mesh
 * `gossipStreamRepairMs` reopens it. Here node A's outbound gossipsub stream to B is closed and dropped, as a
 * timed-out negotiation leaves it; the repair must reopen it and A's messages must reach B again.
 */
import test from 'ava';
import { createMesh, type Mesh } from '../../src/mesh/index.ts';
import { FAST, link, stopAll, viewsConverged, waitFor } from './mesh-helpers.ts';

interface Streams { streamsOutbound: Map<string, { close(): Promise<void> }> }
const outbound = (m: Mesh): Streams['streamsOutbound'] => (m.libp2p.services.pubsub as unknown as Streams).streamsOutbound;

test('a lost gossipsub outbound stream is reopened and messages flow again', async (t) => {
  const meshes: Mesh[] = [];
  t.teardown(() => stopAll(meshes));
  for (let i = 0; i < 2; i++) {
    const m = await createMesh({ federation: 'test', ...FAST, gossipStreamRepairMs: 200, streamNegotiationTimeoutMs: 1000, listen: [`/memory/fmfl-repair-${process.pid}-${i}`] });
    await m.start();
    meshes.push(m);
  }
  const [a, b] = meshes;
  link(meshes, [[0, 1]]);
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const got: string[] = [];
  b.subscribe('probe', (payload) => void got.push(Buffer.from(payload).toString()));
  a.subscribe('probe', () => {});
  await waitFor(() => a.topicPeers('probe').includes(b.selfId), 'A sees B on the topic');

  const bId = b.selfId;
  const s = outbound(a).get(bId);
  t.truthy(s, 'A holds an outbound gossipsub stream to B');
  outbound(a).delete(bId);
  await s!.close();
  const before = a.gossipRepairs.attempts;
  await waitFor(() => outbound(a).has(bId), 'the outbound stream reopened');
  t.true(a.gossipRepairs.attempts > before);
  // Published until one arrives: the reopened stream carries A's messages to B.
  let n = 0;
  await waitFor(async () => {
    await a.publish('probe', Buffer.from(`m${n++}`));
    return got.length > 0;
  }, 'a message from A at B');
  t.regex(got[0], /^m\d+$/);
});
