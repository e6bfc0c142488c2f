/**
 * The roster: gossip whose signer is not a federation member is rejected whoever relays it (real libp2p nodes on
 * 127.0.0.1), so foreign identities never enter the membership view and their updates or aggregates never reach a
 * protocol.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { RPC } from '@chainsafe/libp2p-gossipsub/message';
import { publicKeyToProtobuf } from '@libp2p/crypto/keys';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createMesh, encodeFrame, ephemeralIdentity, readRosterFile, RefusalReason, MESH_PROTOCOL_VERSION, type Identity, type Mesh } from '../../src/mesh/index.ts';
import { Envelope } from '../../src/mesh/pb/envelope.ts';
import { Heartbeat } from '../../src/mesh/pb/membership.ts';
import { ConfigError } from '../../src/util/errors.ts';
import { FAST, stopAll, waitFor } from './mesh-helpers.ts';
import { tempDir } from '../temp-dirs.ts';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

async function mesh(identity: Identity, roster?: string[]): Promise<Mesh> {
  const m = await createMesh({ federation: 'test', ...FAST, identity, roster });
  await m.start();
  return m;
}

test.serial('a member relaying foreign-signed heartbeats, updates and globals: the roster node rejects them, an open node would not', async (t) => {
  const [hId, mId, fId, oId] = await Promise.all([0, 1, 2, 3].map(() => ephemeralIdentity()));
  // H: honest, roster {H, M}. M: a member running without a roster (it relays whatever it gets). F: foreign.
  // O: an open node behind M (no roster): the control showing that M really relays F's messages.
  const honest = await mesh(hId, [hId.peerId.toString(), mId.peerId.toString()]);
  const member = await mesh(mId);
  const foreign = await mesh(fId);
  const open = await mesh(oId);
  const all = [honest, member, foreign, open];
  t.teardown(() => stopAll(all));
  const got = new Map<Mesh, string[]>(all.map((m) => [m, []]));
  for (const m of all) for (const topic of ['update', 'global']) m.subscribe(topic, (p, meta) => void got.get(m)!.push(`${topic}:${meta.from}:${new TextDecoder().decode(p)}`));
  await honest.dial(member.multiaddrs()[0]);
  await foreign.dial(member.multiaddrs()[0]);
  await open.dial(member.multiaddrs()[0]);
  const F = fId.peerId.toString();
  const M = mId.peerId.toString();
  await waitFor(() => open.membership.memberIds().includes(F), 'the open node hears F through M');
  await waitFor(() => honest.membership.memberIds().includes(M), 'the honest node hears M');
  await waitFor(() => honest.refusalCount(RefusalReason.NOT_ALLOWED) > 0, "the honest node refuses F's relayed heartbeats");
  await waitFor(() => member.topicPeers('update').includes(honest.peerId.toString()) && foreign.topicPeers('update').includes(M), 'topic meshes');
  await waitFor(() => member.topicPeers('global').includes(honest.peerId.toString()) && foreign.topicPeers('global').includes(M), 'topic meshes');
  await foreign.publish('update', text('forged-update'));
  await foreign.publish('global', text('forged-global'));
  await member.publish('update', text('member-update'));
  await waitFor(() => got.get(open)!.includes(`update:${F}:forged-update`) && got.get(open)!.includes(`global:${F}:forged-global`), 'the open node gets F\'s messages via M');
  await waitFor(() => got.get(honest)!.includes(`update:${M}:member-update`), "the honest node gets the member's own update");
  t.false(got.get(honest)!.some((g) => g.includes(F)), 'no message signed by F reaches a handler on the roster node');
  t.false(honest.membership.memberIds().includes(F), 'F never enters the roster node\'s view');
  t.deepEqual(honest.membership.memberIds(), [M]);
  t.false(honest.onRoster(F));
  t.true(honest.onRoster(M) && honest.onRoster(hId.peerId.toString()));
});

test.serial('a member injecting heartbeats of 30 made-up identities (each correctly signed by its own key) does not grow the view', async (t) => {
  const [hId, mId] = await Promise.all([0, 1].map(() => ephemeralIdentity()));
  const honest = await mesh(hId, [hId.peerId.toString(), mId.peerId.toString()]);
  const member = await mesh(mId);
  t.teardown(() => stopAll([honest, member]));
  await honest.dial(member.multiaddrs()[0]);
  await waitFor(() => honest.membership.memberIds().includes(mId.peerId.toString()), 'H sees M');
  const topic = member.topicId('membership');
  const fakes = await Promise.all(Array.from({ length: 30 }, () => ephemeralIdentity()));
  const msgs: RPC.Message[] = [];
  for (const f of fakes) {
    const hb = Heartbeat.encode({
      version: 1, peerId: f.peerId.toMultihash().bytes, seq: BigInt(Date.now()) * 1000n, timestampMs: BigInt(Date.now()), addrs: [],
      protocolVersion: MESH_PROTOCOL_VERSION, capabilities: { device: 'cpu', trainThroughput: 0, maxExitDepth: 0, datasetSize: 0n, loraRank: 0, features: [] }, leaving: false,
    });
    const data = Envelope.encode({ version: 1, timestampMs: BigInt(Date.now()), inline: hb });
    const msg: RPC.Message = { from: f.peerId.toMultihash().bytes, data, seqno: randomBytes(8), topic };
    const toSign = new Uint8Array([...text('libp2p-pubsub:'), ...RPC.Message.encode(msg)]);
    msgs.push({ ...msg, signature: await f.privateKey.sign(toSign), key: publicKeyToProtobuf(f.privateKey.publicKey) });
  }
  const before = honest.refusalCount(RefusalReason.NOT_ALLOWED);
  const stream = await member.libp2p.dialProtocol(honest.peerId, '/meshsub/1.1.0');
  await stream.sink([encodeFrame(RPC.encode({ subscriptions: [], messages: msgs }))]);
  await waitFor(() => honest.refusalCount(RefusalReason.NOT_ALLOWED) >= before + 30, 'all 30 are refused as not on the roster');
  t.deepEqual(honest.membership.memberIds(), [mId.peerId.toString()], 'the view still holds only the real member');
});

test('roster files: JSON array, {"members"}, or one PeerId a line with comments; bad entries are ConfigErrors', async (t) => {
  const dir = await tempDir('fmfl-roster-');
  const ids = (await Promise.all([0, 1].map(() => ephemeralIdentity()))).map((i) => i.peerId.toString()).sort();
  await writeFile(join(dir, 'a.json'), JSON.stringify(ids));
  await writeFile(join(dir, 'b.json'), JSON.stringify({ members: ids }));
  await writeFile(join(dir, 'c.txt'), `# federation roster\n${ids[1]}   # site b\n\n${ids[0]}\n`);
  await writeFile(join(dir, 'bad.txt'), `${ids[0]}\nnot-a-peer-id\n`);
  await writeFile(join(dir, 'empty.txt'), '# nobody\n');
  for (const f of ['a.json', 'b.json', 'c.txt']) t.deepEqual(await readRosterFile(join(dir, f)), ids, f);
  const bad = await t.throwsAsync(readRosterFile(join(dir, 'bad.txt')), { instanceOf: ConfigError });
  t.regex(bad.message, /entry 2 \("not-a-peer-id"\) is not a PeerId/);
  await t.throwsAsync(readRosterFile(join(dir, 'empty.txt')), { instanceOf: ConfigError, message: /lists no members/ });
  await t.throwsAsync(readRosterFile(join(dir, 'missing.txt')), { instanceOf: ConfigError, message: /cannot read roster file/ });
});
