import test from 'ava';
import { randomBytes } from 'node:crypto';
import { RPC } from '@chainsafe/libp2p-gossipsub/message';
import { publicKeyToProtobuf } from '@libp2p/crypto/keys';
import {
  createMesh,
  ephemeralIdentity,
  encodeFrame,
  FrameReader,
  generateSwarmKeyText,
  parseSwarmKey,
  RefusalError,
  RefusalReason,
  MAX_ENVELOPE_BYTES,
  MESH_PROTOCOL_VERSION,
  sha256,
  type Identity,
  type Mesh,
} from '../../src/mesh/index.ts';
import { Envelope } from '../../src/mesh/pb/envelope.ts';
import { Heartbeat } from '../../src/mesh/pb/membership.ts';
import { StreamResponse } from '../../src/mesh/pb/sync.ts';
import { FAST, startMeshes, stopAll, link, waitFor, viewsConverged } from './mesh-helpers.ts';

const enc = (payload: Uint8Array): Uint8Array => Envelope.encode({ version: 1, timestampMs: BigInt(Date.now()), inline: payload });

function heartbeat(id: { peerId: Identity['peerId'] }, over: Partial<Heartbeat> = {}): Uint8Array {
  return Heartbeat.encode({
    version: 1,
    peerId: id.peerId.toMultihash().bytes,
    seq: 1n,
    timestampMs: BigInt(Date.now()),
    addrs: ['/ip4/127.0.0.1/tcp/9'],
    protocolVersion: MESH_PROTOCOL_VERSION,
    capabilities: { device: 'cpu', trainThroughput: 0, maxExitDepth: 0, datasetSize: 0n, loraRank: 0, features: [] },
    leaving: false,
    ...over,
  });
}

/** A gossipsub message authored by `author`, signed correctly or with a garbage signature. */
async function rawMessage(author: Identity, topic: string, data: Uint8Array, goodSignature: boolean): Promise<RPC.Message> {
  const msg: RPC.Message = { from: author.peerId.toMultihash().bytes, data, seqno: randomBytes(8), topic };
  const toSign = new Uint8Array([...new TextEncoder().encode('libp2p-pubsub:'), ...RPC.Message.encode(msg)]);
  const signature = goodSignature ? await author.privateKey.sign(toSign) : new Uint8Array(randomBytes(64));
  return { ...msg, signature, key: publicKeyToProtobuf(author.privateKey.publicKey) };
}

test.serial('a node without the swarm key (or with another one) cannot connect', async (t) => {
  const key = parseSwarmKey(generateSwarmKeyText());
  const inside = await startMeshes(2, { swarmKey: key });
  const wrongKey = await startMeshes(1, { swarmKey: parseSwarmKey(generateSwarmKeyText()) });
  const noKey = await startMeshes(1);
  const all = [...inside, ...wrongKey, ...noKey];
  t.teardown(async () => stopAll(all));
  link(inside, [[0, 1]]);
  await waitFor(() => viewsConverged(inside), 'the two keyed nodes see each other');
  await t.throwsAsync(wrongKey[0].dial(inside[0].multiaddrs()[0]));
  await t.throwsAsync(noKey[0].dial(inside[0].multiaddrs()[0]));
  await t.throwsAsync(inside[1].dial(noKey[0].multiaddrs()[0]));
  t.deepEqual(inside[0].connectedPeers(), [inside[1].peerId.toString()]);
  t.deepEqual(wrongKey[0].connectedPeers(), []);
  t.deepEqual(noKey[0].membership.memberIds(), []);
});

test.serial('with an allowlist, unlisted peers are refused both ways', async (t) => {
  const [listed, unlisted] = await startMeshes(2);
  const guarded = await createMesh({ federation: 'test', ...FAST, allow: [listed.peerId.toString()] });
  await guarded.start();
  const all = [listed, unlisted, guarded];
  t.teardown(async () => stopAll(all));
  await listed.dial(guarded.multiaddrs()[0]);
  await waitFor(() => viewsConverged([listed, guarded]), 'the listed peer and the guarded node see each other');
  // The dialler may complete its side of the handshake; the guarded node's gater then drops the connection.
  await unlisted.dial(guarded.multiaddrs()[0]).catch(() => {});
  await waitFor(() => guarded.refusalCount(RefusalReason.NOT_ALLOWED) >= 1, 'the gater refuses the inbound connection');
  await waitFor(() => unlisted.connectedPeers().length === 0, 'the unlisted peer ends up unconnected');
  await t.throwsAsync(guarded.dial(unlisted.multiaddrs()[0]));
  t.deepEqual(guarded.connectedPeers(), [listed.peerId.toString()]);
  t.deepEqual(unlisted.membership.memberIds(), []);
  t.false(guarded.membership.memberIds().includes(unlisted.peerId.toString()));
  t.false(guarded.isPermitted(unlisted.peerId.toString()));
  t.true(guarded.isPermitted(listed.peerId.toString()));
});

test.serial('malformed, oversized, mis-attributed, stale and replayed gossip is rejected; the node keeps serving', async (t) => {
  // A light penalty so the attacker is not graylisted half-way (graylisting has its own test below).
  const [victim, honest, attacker] = await startMeshes(3, { invalidMessageWeight: -0.01 });
  const all = [victim, honest, attacker];
  t.teardown(async () => stopAll(all));
  const received: string[] = [];
  victim.subscribe('data', (p) => void received.push(new TextDecoder().decode(p)), {
    maxPayloadBytes: 1024,
    validator: (p) => (p[0] === 0x21 ? RefusalReason.APPLICATION : undefined),
  });
  const bulk: Uint8Array[] = [];
  victim.subscribe('bulk', (p) => void bulk.push(p));
  honest.subscribe('data', () => {});
  attacker.subscribe('data', () => {});
  link(all, [[0, 1], [0, 2]]);
  await waitFor(() => viewsConverged(all), 'initial convergence');
  await waitFor(() => attacker.topicPeers('bulk').includes(victim.peerId.toString()), 'attacker knows the victim takes bulk');
  const ps = attacker.libp2p.services.pubsub;
  const hbTopic = attacker.topicId('membership');
  const dataTopic = attacker.topicId('data');
  const bulkTopic = attacker.topicId('bulk');
  const before = (r: RefusalReason): number => victim.refusalCount(r);
  const expect = async (reason: RefusalReason, what: string, send: () => Promise<unknown>): Promise<void> => {
    const n0 = before(reason);
    await send();
    await waitFor(() => before(reason) > n0, `victim refuses ${what} with ${RefusalReason[reason]}`);
  };
  const attackerId = { peerId: attacker.peerId };
  const honestIdentity = await ephemeralIdentity();

  await expect(RefusalReason.MALFORMED, 'garbage envelope bytes', () => ps.publish(hbTopic, new Uint8Array(randomBytes(200))));
  await expect(RefusalReason.MALFORMED, 'an envelope holding a garbage heartbeat', () =>
    ps.publish(hbTopic, enc(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]))));
  await expect(RefusalReason.OVERSIZED, 'an envelope above MAX_ENVELOPE_BYTES', () =>
    ps.publish(dataTopic, new Uint8Array(MAX_ENVELOPE_BYTES + 1)));
  await expect(RefusalReason.OVERSIZED, 'a payload above the topic cap', () => ps.publish(dataTopic, enc(new Uint8Array(2048))));
  await expect(RefusalReason.UNSUPPORTED_VERSION, 'an envelope of version 2', () =>
    ps.publish(dataTopic, Envelope.encode({ version: 2, timestampMs: BigInt(Date.now()), inline: new Uint8Array(1) })));
  await expect(RefusalReason.APPLICATION, 'a payload the topic validator refuses', () =>
    ps.publish(dataTopic, enc(new TextEncoder().encode('!bad'))));
  await expect(RefusalReason.PEER_MISMATCH, 'a heartbeat claiming another peer id', () =>
    ps.publish(hbTopic, enc(heartbeat(honestIdentity, { seq: BigInt(Date.now()) * 10_000n }))));
  await expect(RefusalReason.STALE, 'a heartbeat an hour old', () =>
    ps.publish(hbTopic, enc(heartbeat(attackerId, { seq: BigInt(Date.now()) * 10_000n, timestampMs: BigInt(Date.now() - 3_600_000) }))));
  await expect(RefusalReason.STALE, 'a heartbeat an hour in the future', () =>
    ps.publish(hbTopic, enc(heartbeat(attackerId, { seq: BigInt(Date.now()) * 10_000n, timestampMs: BigInt(Date.now() + 3_600_000) }))));
  await expect(RefusalReason.REPLAYED, 'a heartbeat whose seq is not newer', () => ps.publish(hbTopic, enc(heartbeat(attackerId, { seq: 5n }))));
  await expect(RefusalReason.INVALID_FIELD, 'a heartbeat with a non-finite throughput', () =>
    ps.publish(hbTopic, enc(heartbeat(attackerId, {
      seq: BigInt(Date.now()) * 20_000n,
      capabilities: { device: 'cpu', trainThroughput: Number.NaN, maxExitDepth: 0, datasetSize: 0n, loraRank: 0, features: [] },
    }))));

  // A large-payload announcement whose bytes, served over the sync stream, do not match the announced hash.
  const real = new Uint8Array(100 * 1024).fill(1);
  attacker.handleRequest('blob', () => new Uint8Array(real.byteLength).fill(2));
  await expect(RefusalReason.BLOB_MISMATCH, 'a blob whose bytes do not match its hash', () =>
    ps.publish(bulkTopic, Envelope.encode({ version: 1, timestampMs: BigInt(Date.now()), blob: { sha256: sha256(real), size: BigInt(real.byteLength) } })));
  await expect(RefusalReason.INVALID_FIELD, 'a blob announcement small enough to be inline', () =>
    ps.publish(bulkTopic, Envelope.encode({ version: 1, timestampMs: BigInt(Date.now()), blob: { sha256: sha256(real), size: 10n } })));

  // Wrongly signed at the gossipsub layer: a raw RPC on the meshsub stream. The forged heartbeat (bad signature)
  // must never reach the view, while a correctly signed one sent the same way does.
  const forged = await ephemeralIdentity();
  const genuine = await ephemeralIdentity();
  const joined: string[] = [];
  victim.membership.on('join', (m: { peerId: string }) => joined.push(m.peerId));
  const stream = await attacker.libp2p.dialProtocol(victim.peerId, '/meshsub/1.1.0');
  const bad = await rawMessage(forged, hbTopic, enc(heartbeat(forged)), false);
  const good = await rawMessage(genuine, hbTopic, enc(heartbeat(genuine)), true);
  await stream.sink([encodeFrame(RPC.encode({ subscriptions: [], messages: [bad] })), encodeFrame(RPC.encode({ subscriptions: [], messages: [good] }))]);
  await waitFor(() => joined.includes(genuine.peerId.toString()), 'the correctly signed raw heartbeat is accepted');
  t.false(joined.includes(forged.peerId.toString()), 'the badly signed heartbeat never joined');
  t.false(victim.membership.memberIds().includes(forged.peerId.toString()));

  // The victim keeps serving: honest traffic flows, views hold, sync answers.
  t.true(victim.membership.memberIds().includes(honest.peerId.toString()));
  await honest.publish('data', new TextEncoder().encode('still-alive'));
  await waitFor(() => received.includes('still-alive'), 'honest message delivered after the attack');
  t.false(received.some((r) => r.startsWith('!')), 'refused payloads never reach the handler');
  t.is(bulk.length, 0, 'the mismatching blob never reaches the handler');
  await honest.publish('bulk', real);
  await waitFor(() => bulk.length === 1, 'a genuine large payload still arrives over the stream');
  t.deepEqual(bulk[0], real);
  t.deepEqual(await honest.request(victim.peerId, 'ping', new Uint8Array([1, 2, 3])), new Uint8Array([1, 2, 3]));
  t.true(victim.isRunning);
  t.true(victim.peerScore(attacker.peerId) < 0, 'rejected messages cost the attacker score');
  t.true(victim.peerScore(honest.peerId) >= 0, 'the honest peer is not penalised');
});

test.serial('a peer that keeps sending rejected messages is graylisted; honest traffic still flows', async (t) => {
  const [victim, honest, attacker] = await startMeshes(3);
  const all = [victim, honest, attacker];
  t.teardown(async () => stopAll(all));
  const received: string[] = [];
  for (const m of all) m.subscribe('data', (p) => void (m === victim && received.push(new TextDecoder().decode(p))));
  link(all, [[0, 1], [0, 2]]);
  await waitFor(() => viewsConverged(all), 'initial convergence');
  await waitFor(() => attacker.topicPeers('data').includes(victim.peerId.toString()), 'attacker knows the victim takes data');
  const ps = attacker.libp2p.services.pubsub;
  const flood = async (): Promise<void> => {
    for (let i = 0; i < 140; i++) await ps.publish(attacker.topicId('data'), new Uint8Array(randomBytes(64)));
  };
  await flood();
  await waitFor(() => victim.peerScore(attacker.peerId) < -80, 'the attacker falls below the graylist threshold');
  // gossipsub lets a peer that last scored >= 0 through for up to 128 RPCs or 1 s (its accept-from whitelist);
  // a second flood after the score is known to be low uses that allowance up by count, not by time.
  await flood();
  await attacker.publish('data', new TextEncoder().encode('from-graylisted'));
  await honest.publish('data', new TextEncoder().encode('from-honest'));
  await waitFor(() => received.includes('from-honest'), 'honest traffic still reaches the victim');
  t.false(received.includes('from-graylisted'), 'a graylisted peer is not heard, even with a valid message');
  t.true(victim.peerScore(honest.peerId) >= 0);
});

test.serial('bad bytes on the sync stream are refused with a reason code; the node keeps serving', async (t) => {
  const [server, client] = await startMeshes(2);
  t.teardown(async () => stopAll([server, client]));
  server.handleRequest('echo', (b) => b);
  server.handleRequest('boom', () => {
    throw new Error('internal detail');
  });
  await client.dial(server.multiaddrs()[0]);
  const proto = server.sync.protocol;

  async function rawExchange(bytes: Uint8Array[]): Promise<StreamResponse> {
    const s = await client.libp2p.dialProtocol(server.peerId, proto);
    const reader = new FrameReader(s.source);
    await s.sink(bytes);
    const header = await reader.next(4096);
    if (header === null) throw new Error('no response');
    return StreamResponse.decode(header);
  }

  t.is((await rawExchange([new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])])).status, RefusalReason.MALFORMED);
  t.is((await rawExchange([new Uint8Array([0x80, 0x80, 0x80, 0x40])])).status, RefusalReason.OVERSIZED);
  t.is((await rawExchange([encodeFrame(new Uint8Array([0x0a, 0xff]))])).status, RefusalReason.MALFORMED);
  t.is((await rawExchange([])).status, RefusalReason.MALFORMED);
  t.is((await rawExchange([encodeFrame(new Uint8Array([0x08, 0x07, 0x12, 0x04, 0x65, 0x63, 0x68, 0x6f]))])).status, RefusalReason.UNSUPPORTED_VERSION);

  const refused = await t.throwsAsync(client.request(server.peerId, 'nope', new Uint8Array(0)), { instanceOf: RefusalError });
  t.is(refused.reason, RefusalReason.UNKNOWN_METHOD);
  const failed = await t.throwsAsync(client.request(server.peerId, 'boom', new Uint8Array(0)), { instanceOf: RefusalError });
  t.is(failed.reason, RefusalReason.UNAVAILABLE);
  t.false(failed.message.includes('internal detail'), 'handler internals are not leaked');
  const big = new Uint8Array(700 * 1024).map((_, i) => i % 251);
  const tooSmall = await t.throwsAsync(client.request(server.peerId, 'echo', big, { maxResponseBytes: 1000 }), { instanceOf: RefusalError });
  t.is(tooSmall.reason, RefusalReason.OVERSIZED);
  t.deepEqual(await client.request(server.peerId, 'echo', big), big, 'multi-chunk responses arrive intact');
  t.true(server.refusalCount(RefusalReason.MALFORMED) >= 3);

  // A further protocol with the same framing (what /fmfl/<federation>/infer/1.0.0 will use), added while running.
  const infer = server.createProtocol('infer', '1.0.0', { maxRequestBytes: 16 });
  infer.handle('predict', (b, ctx) => new TextEncoder().encode(`${b.byteLength} from ${ctx.peer.toString().slice(-4)}`));
  const inferClient = client.createProtocol('infer');
  t.is(infer.protocol, '/fmfl/test/infer/1.0.0');
  t.is(new TextDecoder().decode(await inferClient.request(server.peerId, 'predict', new Uint8Array(3))), `3 from ${client.peerId.toString().slice(-4)}`);
  const tooBig = await t.throwsAsync(inferClient.request(server.peerId, 'predict', new Uint8Array(17)), { instanceOf: RefusalError });
  t.is(tooBig.reason, RefusalReason.OVERSIZED);
});
