/**
 * `SubscribeOptions.wantPayload` on real libp2p meshes (127.0.0.1): an announced payload above the topic's stream
 * cutover that a node does not want is dropped unpulled (the round protocol's verifying committee: members off the
 * committee take no update), while the other subscribers still pull and get it.
 */
import test from 'ava';
import { RefusalReason } from '../../src/mesh/index.ts';
import { link, startMeshes, stopAll, topologies, viewsConverged, waitFor } from './mesh-helpers.ts';

test.serial('a payload announced above the cutover is not pulled nor delivered where wantPayload says no; others get it', async (t) => {
  const meshes = await startMeshes(3);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.full(3));
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const [a, b, c] = meshes;
  const got = new Map(meshes.map((m) => [m, 0]));
  let asked = 0;
  for (const m of meshes) {
    m.subscribe('bulk', () => void got.set(m, got.get(m)! + 1), {
      streamCutoverBytes: 1024,
      wantPayload: m === b ? (meta) => {
        asked++;
        t.is(meta.from.toString(), a.peerId.toString());
        return false;
      } : undefined,
    });
  }
  await waitFor(() => a.topicPeers('bulk').length === 2 && c.topicPeers('bulk').includes(b.peerId.toString()), 'topic peers');
  const before = b.refusalCount(RefusalReason.UNAVAILABLE);
  const res = await a.publish('bulk', new Uint8Array(8192).fill(3));
  t.true(res.viaStream, 'announced, to be pulled over the sync stream');
  await waitFor(() => got.get(c) === 1, 'the wanting subscriber pulled and got it');
  await waitFor(() => b.refusalCount(RefusalReason.UNAVAILABLE) > before, 'the other one declined it');
  t.true(asked >= 1);
  t.is(got.get(b), 0, 'never delivered where it was not wanted');
});
