/**
 * `SubscribeOptions.relay: false` and Mesh `relayHeartbeats: false` on real libp2p meshes (127.0.0.1): a message of a
 * non-relayed topic reaches the author's direct neighbours (flood publish) and no one further, while a relayed topic
 * crosses the same line; a full mesh without heartbeat relaying still converges every view, and a line does not
 * (which is why the option is only for a full mesh).
 */
import test from 'ava';
import { link, startMeshes, stopAll, topologies, viewsConverged, waitFor } from './mesh-helpers.ts';

test.serial('relay: false delivers to direct neighbours only; a relayed topic crosses the same line', async (t) => {
  const meshes = await startMeshes(3);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.line(3));
  await waitFor(() => viewsConverged(meshes), 'membership views over the line (heartbeats relayed by default)');
  const [a, b, c] = meshes;
  const got = (topic: string): Map<string, number> => {
    const n = new Map<string, number>();
    for (const m of meshes) m.subscribe(topic, () => void n.set(m.peerId.toString(), (n.get(m.peerId.toString()) ?? 0) + 1), { relay: topic === 'relayed' });
    return n;
  };
  const direct = got('direct');
  const relayed = got('relayed');
  const id = (m: typeof a): string => m.peerId.toString();
  await waitFor(() => a.topicPeers('direct').includes(id(b)) && b.topicPeers('direct').includes(id(c)) && b.topicPeers('relayed').includes(id(c)), 'topic peers');
  // b forwards only to its gossipsub mesh peers, grafted on gossipsub heartbeats: publish relayed messages until one
  // crosses b to c, so the forwarding path is known to work before the non-relayed message goes out.
  let k = 0;
  await waitFor(async () => {
    if ((relayed.get(id(c)) ?? 0) > 0) return true;
    await a.publish('relayed', new Uint8Array([4, 5, k++]));
    await new Promise((r) => setTimeout(r, 300));
    return false;
  }, 'a relayed message crosses b to c');
  const crossed = relayed.get(id(c))!;
  await a.publish('direct', new Uint8Array([1, 2, 3]));
  await a.publish('relayed', new Uint8Array([7, 8, 9]));
  await waitFor(() => relayed.get(id(c))! > crossed, 'the relayed message sent after it crosses b to c');
  await waitFor(() => direct.get(id(b)) === 1, 'the direct neighbour gets the non-relayed message');
  // A few gossipsub heartbeats (200 ms here) for any forward or IHAVE gossip to have reached c.
  await new Promise((r) => setTimeout(r, 1500));
  t.is(direct.get(id(c)), undefined, 'b neither forwarded it nor offered it in gossip');
  t.is(direct.get(id(b)), 1, 'delivered once');
  t.true((b.received.get('direct') ?? 0) >= 1, 'per-topic receive counter');
});

test.serial('relayHeartbeats: false: a full mesh converges every view, a line only sees its neighbours', async (t) => {
  const full = await startMeshes(4, { relayHeartbeats: false });
  t.teardown(() => stopAll(full));
  link(full, topologies.full(4));
  await waitFor(() => viewsConverged(full), 'full-mesh views without heartbeat relaying');
  const line = await startMeshes(3, { relayHeartbeats: false });
  t.teardown(() => stopAll(line));
  link(line, topologies.line(3));
  const ends = (): [string[], string[]] => [line[0].membership.memberIds(), line[2].membership.memberIds()];
  await waitFor(() => line[1].membership.memberIds().length === 2, 'the middle node hears both ends');
  await waitFor(() => ends()[0].length === 1 && ends()[1].length === 1, 'each end hears the middle node');
  await new Promise((r) => setTimeout(r, 1500));
  t.deepEqual(ends(), [[line[1].peerId.toString()], [line[1].peerId.toString()]], 'an end never hears the other end');
});
