/**
 * The operations surface of a node on real sockets: the HTTP server without a checkpoint, the ops.status poll
 * (including a peer that answers garbage), dial-failure causes for the three usual mistakes, peers.json keeping
 * members that left, and a restart after the peer left first (the cached peer is redialled and explained).
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FmflNode, PEERS_CACHE_FILE } from '../../src/node/index.ts';
import { createMesh, generateSwarmKeyText, RefusalReason, type Mesh } from '../../src/mesh/index.ts';
import { NodeStatus, PEER_STATUS_METHOD, type StatusDocument } from '../../src/ops/index.ts';
import { silentLogger } from '../../src/util/log.ts';
import { tempDir } from '../temp-dirs.ts';
import { FAST, stopAll, waitFor } from './mesh-helpers.ts';

const FAST_NODE = { heartbeatIntervalMs: 200, memberExpiryMs: 1500 };
const fastOpts = { logger: silentLogger(), gossipHeartbeatMs: 200, redialBaseMs: 100, redialMaxMs: 1000 };

test.serial('a node without a checkpoint serves the dashboard, /status, /events, /metrics and /healthz; refuses the rest', async (t) => {
  const a = await FmflNode.create({ federation: 'ops', http: { port: 0 }, ...FAST_NODE }, fastOpts);
  const b = await FmflNode.create({ federation: 'ops', peers: [], ...FAST_NODE }, fastOpts);
  t.teardown(async () => Promise.all([a.stop(), b.stop()]));
  await a.start();
  t.is(b.http, null, 'no HTTP server unless configured');
  b.mesh.addPeer(a.multiaddrs()[0]);
  await b.start();
  await waitFor(() => a.mesh.membership.memberIds().includes(b.peerId), 'a sees b');
  const url = a.http!.url;
  t.regex(url, /^http:\/\/127\.0\.0\.1:\d+$/);

  const home = await fetch(`${url}/`);
  t.is(home.status, 200);
  t.regex(home.headers.get('content-type')!, /text\/html/);
  t.regex(home.headers.get('content-security-policy')!, /default-src 'self'/);
  t.regex(await home.text(), /<script src="\/vendor\/uplot\.js">/);
  const lib = await fetch(`${url}/vendor/uplot.js`);
  t.is(lib.status, 200);
  t.regex(await lib.text(), /uPlot/, 'the chart library is served from node_modules');

  const doc = (await (await fetch(`${url}/status`)).json()) as StatusDocument;
  t.is(doc.v, 1);
  t.is(doc.federation, null, 'not federating');
  t.deepEqual(doc.members.map((m) => m.id).sort(), [a.peerId, b.peerId].sort());
  const mb = doc.members.find((m) => m.id === b.peerId)!;
  t.is(mb.phase, 'idle', 'b answered ops.status');
  t.true(mb.rttMs !== null && mb.rttMs >= 0, 'RTT measured');
  t.deepEqual(mb.neighbours, [a.peerId]);
  t.deepEqual(doc.mesh.edges, [[a.peerId, b.peerId].sort() as [string, string]]);

  const health = (await (await fetch(`${url}/healthz`)).json()) as { ok: boolean; modelVersion: null; members: number };
  t.deepEqual([health.ok, health.modelVersion, health.members], [true, null, 2]);
  const predict = await fetch(`${url}/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  t.is(predict.status, 404);
  t.is(((await predict.json()) as { error: { code: string } }).error.code, 'NO_MODEL');
  t.is((await fetch(`${url}/status`, { method: 'POST' })).status, 405);
  t.is((await fetch(`${url}/../../etc/passwd`)).status, 404);

  const metrics = await (await fetch(`${url}/metrics`)).text();
  t.regex(metrics, /^fmfl_members 2$/m);
  t.regex(metrics, /^fmfl_connected_peers 1$/m);
  t.regex(metrics, /^fmfl_wire_bytes\{direction="in"\} [1-9]\d*$/m);
  t.regex(metrics, /^# TYPE libp2p_/m, "libp2p's own metrics");

  // /events: a first status frame at once, then one per second.
  const ctl = new AbortController();
  const res = await fetch(`${url}/events`, { signal: ctl.signal });
  t.regex(res.headers.get('content-type')!, /text\/event-stream/);
  const reader = res.body!.getReader();
  let text = '';
  while ((text.match(/event: status/g) ?? []).length < 2) text += new TextDecoder().decode((await reader.read()).value);
  ctl.abort();
  const first = JSON.parse(/data: (.*)\n/.exec(text)![1]) as StatusDocument;
  t.is(first.node.id, a.peerId);
});

test.serial('a member answering ops.status with garbage is refused and counted, and shown without a round', async (t) => {
  const [a, evil] = await Promise.all([createMesh({ federation: 'opsx', ...FAST }), createMesh({ federation: 'opsx', ...FAST })]);
  await a.start();
  evil.handleRequest(PEER_STATUS_METHOD, () => new TextEncoder().encode(JSON.stringify({ v: 1, round: 3, phase: 'training', neighbours: ['not-a-peer-id'] })));
  await evil.start();
  t.teardown(async () => stopAll([a, evil]));
  const status = new NodeStatus(a);
  evil.addPeer(a.multiaddrs()[0]);
  await waitFor(() => a.membership.memberIds().includes(evil.peerId.toString()), 'a sees evil');
  await status.refreshPeers(true);
  t.is(a.refusalCount(RefusalReason.INVALID_FIELD), 1);
  const doc = status.document();
  const m = doc.members.find((x) => x.id === evil.peerId.toString())!;
  t.is(m.round, null);
  t.deepEqual(m.neighbours, []);
  t.is(doc.refusals.byReason.INVALID_FIELD, 1);
  t.like(doc.refusals.recent.at(-1), { reason: 'INVALID_FIELD', where: PEER_STATUS_METHOD, peer: evil.peerId.toString() });
});

async function causeOf(m: Mesh): Promise<string> {
  await waitFor(() => m.dialStatus().some((d) => d.cause !== null), 'a dial failure is recorded', 30_000);
  return m.dialStatus()[0].cause!;
}

test.serial('dial failures name the likely cause: unreachable, swarm key mismatch, allowlists on either side', async (t) => {
  const meshes: Mesh[] = [];
  t.teardown(async () => stopAll(meshes));
  const mk = async (o: Parameters<typeof createMesh>[0]): Promise<Mesh> => {
    const m = await createMesh({ ...FAST, ...o });
    meshes.push(m);
    await m.start();
    return m;
  };
  const target = await mk({ federation: 'dial' });
  const id = target.peerId.toString();

  const lost = await mk({ federation: 'dial', peers: [`/ip4/127.0.0.1/tcp/1/p2p/${id}`] });
  t.regex(await causeOf(lost), /^unreachable: nothing listens/);
  t.false(lost.dialStatus()[0].connected);
  t.true(lost.dialStatus()[0].attempts >= 1);

  const key = (): Uint8Array => new TextEncoder().encode(generateSwarmKeyText());
  const privA = await mk({ federation: 'dial', swarmKey: key() });
  const privB = await mk({ federation: 'dial', swarmKey: key(), peers: [privA.multiaddrs()[0]] });
  t.regex(await causeOf(privB), /swarm key mismatch/);
  const plain = await mk({ federation: 'dial', peers: [privA.multiaddrs()[0]] });
  t.regex(await causeOf(plain), /swarm key|private network/);

  const picky = await mk({ federation: 'dial', peers: [target.multiaddrs()[0]], allow: [privA.peerId.toString()] });
  t.regex(await causeOf(picky), /^not allowlisted: the peer is not on this node's --allow list/);
  const guarded = await mk({ federation: 'dial', allow: [privA.peerId.toString()] });
  const outsider = await mk({ federation: 'dial', peers: [guarded.multiaddrs()[0]] });
  t.regex(await causeOf(outsider), /not on its --allow list/);
});

test.serial('peers.json keeps a member that left before this node stopped', async (t) => {
  const dirA = await tempDir('fmfl-ops-a-');
  const a = await FmflNode.create({ stateDir: dirA, federation: 'cache', ...FAST_NODE }, fastOpts);
  await a.start();
  const b = await FmflNode.create({ federation: 'cache', peers: [a.multiaddrs()[0]], ...FAST_NODE }, fastOpts);
  t.teardown(async () => Promise.all([a.stop(), b.stop()]));
  await b.start();
  await waitFor(() => a.mesh.membership.memberIds().includes(b.peerId), 'a sees b');
  await b.stop();
  await waitFor(() => a.mesh.membership.memberIds().length === 0, 'b left');
  await a.stop();
  const cached = JSON.parse(await readFile(join(dirA, PEERS_CACHE_FILE), 'utf8')) as string[];
  t.is(cached.length, 1);
  t.true(cached[0].endsWith(`/p2p/${b.peerId}`));
});

test.serial('a node restarted after its peer left first redials the cached peer, says why it fails, and connects when the peer is back', async (t) => {
  const quiet = { ...FAST_NODE, measureCapabilities: false, federation: 'restart' };
  const dirA = await tempDir('fmfl-restart-a-');
  const dirB = await tempDir('fmfl-restart-b-');
  const nodes: FmflNode[] = [];
  t.teardown(async () => Promise.all(nodes.map((n) => n.stop())));
  const mk = async (o: Record<string, unknown>): Promise<FmflNode> => {
    const n = await FmflNode.create({ ...quiet, ...o }, fastOpts);
    nodes.push(n);
    await n.start();
    return n;
  };
  const a = await mk({ stateDir: dirA });
  const b = await mk({ stateDir: dirB, peers: [a.multiaddrs()[0]] });
  const addrB = b.multiaddrs()[0];
  await waitFor(() => a.mesh.membership.memberIds().includes(b.peerId), 'a sees b');
  await b.stop(); // b leaves first
  await waitFor(() => a.mesh.membership.memberIds().length === 0, 'b left');
  await a.stop();

  const a2 = await mk({ stateDir: dirA });
  await waitFor(() => a2.mesh.dialStatus().some((d) => d.cause !== null), 'the cached peer is dialled and its failure explained', 30_000);
  const d = a2.mesh.dialStatus();
  t.is(d.length, 1, 'the cached peer is a dial target');
  t.is(d[0].addr, addrB);
  t.false(d[0].connected);
  t.regex(d[0].cause!, /^unreachable/);
  const attempts = d[0].attempts;
  await waitFor(() => a2.mesh.dialStatus()[0].attempts > attempts, 'redialled with backoff, not once', 30_000);

  // b comes back at its old address; its own cache holds a's old port (a restarted on another), so only a's redial can join them.
  const b2 = await mk({ stateDir: dirB, listen: [addrB.slice(0, addrB.indexOf('/p2p/'))] });
  t.is(b2.peerId, b.peerId);
  await waitFor(() => a2.mesh.membership.memberIds().includes(b.peerId), 'a redials the cached address and b is a member again', 30_000);
  t.true(a2.mesh.dialStatus()[0].connected);
});
