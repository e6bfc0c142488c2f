/**
 * The leader protocol's state pulls at scale (issue 17): a node waiting in a round asks a rotating batch of
 * CATCH_UP_PARALLEL members per leader timeout (`catchUp(core, true)`), not all N-1 (N·(N-1) requests per timeout in
 * the federation); the catch-up at start still asks every member. Against the in-memory fake mesh, 20 members.
 */
import test from 'ava';
import { DEFAULT_ROUND_OPTIONS, LeaderProtocol, makeState, STATE_METHOD } from '../../src/round/index.ts';
import { CATCH_UP_PARALLEL, catchUp } from '../../src/round/leader-sync.ts';
import type { LeaderCore } from '../../src/round/leader-core.ts';
import type { UpdateManifest } from '../../src/update/index.ts';
import { silentLogger } from '../../src/util/log.ts';
import { fakeMeshes } from '../fake-mesh.ts';

const N = 20;
const manifest: UpdateManifest = { tensors: [{ name: 'w', shape: [4] }] };
const initial = makeState(0, new Map([['w', new Float32Array(4)]]), [], manifest);

test('a periodic catch-up asks the next CATCH_UP_PARALLEL members; repeated ones cover every member; the start-up one asks all', async (t) => {
  const { net, ports } = await fakeMeshes(N, { federation: 'fake' });
  const asked: string[] = [];
  const request = ports[0].request.bind(ports[0]);
  ports[0].request = async (peer, method, body, o) => {
    if (method === STATE_METHOD) asked.push(peer);
    return request(peer, method, body, o);
  };
  const protos = ports.map((port, i) => {
    const ctx = { mesh: port, federation: 'fake', selfId: port.selfId, manifest, loraRank: 0, logger: silentLogger(), seed: i, members: () => net.view(port.selfId) };
    return new LeaderProtocol(ctx, { ...DEFAULT_ROUND_OPTIONS, maxRounds: 3 }, initial);
  });
  for (const p of protos) await p.start();
  const core = (protos[0] as unknown as { core: LeaderCore }).core;
  const others = net.view(ports[0].selfId).filter((p) => p !== ports[0].selfId);

  const calls: string[][] = [];
  for (let k = 0; k < Math.ceil(others.length / CATCH_UP_PARALLEL); k++) {
    asked.length = 0;
    t.false(await catchUp(core, true), 'nobody is ahead');
    calls.push([...asked]);
  }
  for (const c of calls) {
    t.true(c.length <= CATCH_UP_PARALLEL, `one periodic catch-up asked ${c.length} members`);
    t.false(c.includes(ports[0].selfId));
  }
  t.deepEqual(new Set(calls.flat()), new Set(others), 'consecutive periodic catch-ups together ask every member');

  asked.length = 0;
  await protos[0].catchUp();
  t.deepEqual(new Set(asked), new Set(others), 'the catch-up at start asks every member');
  t.is(asked.length, others.length);
  for (const p of protos) await p.stop();
  await net.settle();
});
