/**
 * The leader protocol's state pulls at scale (issue 17): a node waiting in a round asks a rotating batch of
 * CATCH_UP_PARALLEL members per leader timeout (`catchUp(core, true)`), not all N-1 (N·(N-1) requests per timeout in
 * the federation); the catch-up at start still asks every member. Against the in-memory fake mesh, 20 members.
 */
import test from 'ava';
import { DEFAULT_ROUND_OPTIONS, LeaderProtocol, makeState, STATE_METHOD } from '../../src/round/index.ts';
import { makeAttestation } from '../../src/round/certificate.ts';
import { ROUND_WIRE_VERSION } from '../../src/round/leader-wire.ts';
import { StateResponse } from '../../src/round/pb/round.ts';
import { encodeState } from '../../src/round/state.ts';
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

test('parallel state pulls never move a node backwards: a certified version 2 answered after a certified version 3 is not adopted', async (t) => {
  // Review finding: syncFrom compared a response with the version this node had before its request, so of two
  // members answering one catch-up batch, the slower one's older certified state replaced the newer one just adopted.
  const n = 5;
  const { net, ports } = await fakeMeshes(n, { federation: 'fake' });
  const certified = async (version: number): Promise<Uint8Array> => {
    const st = makeState(version, new Map([['w', new Float32Array(4).fill(version)]]), [], manifest);
    const cert = await Promise.all(ports.slice(1, 4).map((p) => makeAttestation((d) => p.signWithIdentity(d), 'fake', p.selfId, version, new Uint8Array(32), st.hash)));
    return StateResponse.encode({ version: ROUND_WIRE_VERSION, globalVersion: BigInt(version), hash: st.hash, state: encodeState(st, manifest, 'fake', ports[1].selfId, 0), certificate: cert });
  };
  const fast = await certified(3);
  const slow = await certified(2);
  const [a, b] = [ports[1].selfId, ports[2].selfId];
  const request = ports[0].request.bind(ports[0]);
  ports[0].request = async (peer, method, body, o) => {
    if (method === STATE_METHOD && peer === a) return fast;
    if (method === STATE_METHOD && peer === b) return new Promise((r) => setTimeout(() => r(slow), 50));
    return request(peer, method, body, o);
  };
  const ctx = { mesh: ports[0], federation: 'fake', selfId: ports[0].selfId, manifest, loraRank: 0, logger: silentLogger(), seed: 0, members: () => net.view(ports[0].selfId) };
  const proto = new LeaderProtocol(ctx, { ...DEFAULT_ROUND_OPTIONS, maxRounds: 5 }, initial);
  await proto.start();
  const core = (proto as unknown as { core: LeaderCore }).core;
  const seen: number[] = [];
  const adopt = core.adopt.bind(core);
  core.adopt = (...args: Parameters<LeaderCore['adopt']>) => { seen.push(args[0].version); adopt(...args); };
  t.true(await catchUp(core), 'the node advanced');
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(seen, [3], 'only the newer certified state was adopted, once');
  t.is(proto.round, 3);
  await proto.stop();
  await net.settle();
});
