/**
 * Discovery with real nodes on loopback: mDNS (@libp2p/mdns) and bootstrap lists (@libp2p/bootstrap) connect nodes
 * without --peers, and neither gets around the swarm key or the allowlist.
 */
import test from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/main.ts';
import {
  createMesh,
  ephemeralIdentity,
  generateSwarmKeyText,
  parseSwarmKey,
  type DiscoveryDialFailure,
  type Mesh,
  type MeshOptions,
  type RefusalEvent,
} from '../../src/mesh/index.ts';
import { FAST, stopAll, waitFor, viewsConverged } from './mesh-helpers.ts';

/** A fresh swarm key per test keeps nodes of other tests (and other runs on this LAN) out. */
const freshKey = (): Uint8Array => parseSwarmKey(generateSwarmKeyText());

async function start(opts: Partial<MeshOptions>): Promise<Mesh> {
  const m = await createMesh({ federation: 'disc', ...FAST, mdnsIntervalMs: 500, ...opts });
  await m.start();
  return m;
}

test.serial('mDNS: nodes on loopback find each other without --peers', async (t) => {
  const swarmKey = freshKey();
  const meshes = [await start({ mdns: true, swarmKey }), await start({ mdns: true, swarmKey }), await start({ mdns: true, swarmKey })];
  t.teardown(() => stopAll(meshes));
  await waitFor(() => viewsConverged(meshes), 'three mDNS nodes see each other as members');
  for (const m of meshes) t.is(m.dialStatus().length, 0, 'no configured peers');
  t.pass();
});

test.serial('mDNS respects the swarm key and the allowlist: an outsider is found but never connected', async (t) => {
  const k1 = freshKey();
  const [ida, idb] = [await ephemeralIdentity(), await ephemeralIdentity()];
  const allow = [ida.peerId.toString(), idb.peerId.toString()];
  const a = await start({ mdns: true, swarmKey: k1, identity: ida, allow });
  const b = await start({ mdns: true, swarmKey: k1, identity: idb, allow });
  const failures = new Map<string, DiscoveryDialFailure[]>();
  const track = (m: Mesh, name: string): Mesh => {
    failures.set(name, []);
    m.on('discovery:dial-failed', (f: DiscoveryDialFailure) => failures.get(name)!.push(f));
    return m;
  };
  // Another swarm key (a different private network) and the right key without being on the allowlist.
  const refusedBy = new Set<string>();
  const notAllowedId = await ephemeralIdentity();
  for (const m of [a, b]) m.on('refused', (e: RefusalEvent) => e.where === 'connection-gater' && e.peer === notAllowedId.peerId.toString() && refusedBy.add(m.selfId));
  const otherKey = track(await start({ mdns: true, swarmKey: freshKey() }), 'otherKey');
  const notAllowed = track(await start({ mdns: true, swarmKey: k1, identity: notAllowedId }), 'notAllowed');
  t.teardown(() => stopAll([a, b, otherKey, notAllowed]));
  await waitFor(() => viewsConverged([a, b]), 'the two allowlisted members find each other by mDNS');
  const members = new Set([a.selfId, b.selfId]);
  await waitFor(() => failures.get('otherKey')!.some((f) => members.has(f.peer)), 'the node with another swarm key tried a member and failed');
  // The outsider's connection is refused by the members' connection gater (its own dial may complete the handshake).
  await waitFor(() => refusedBy.has(a.selfId) || refusedBy.has(b.selfId), 'a member refused the node not on the allowlist');
  for (const m of [a, b]) {
    t.false(m.connectedPeers().includes(otherKey.selfId), 'no connection to the other private network');
    t.false(m.connectedPeers().includes(notAllowed.selfId), 'no connection to a peer off the allowlist');
    t.deepEqual(m.membership.memberIds().sort(), [...members].filter((id) => id !== m.selfId));
  }
  t.deepEqual(otherKey.connectedPeers(), []);
});

test.serial('bootstrap list (a profile key) connects fmfl-node without --peers', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fmfl-disc-'));
  const key = join(dir, 'swarm.key');
  await writeFile(key, generateSwarmKeyText());
  const hub = await start({ swarmKey: parseSwarmKey(await readFile(key, 'utf8')) });
  t.teardown(async () => {
    await stopAll([hub]);
    await rm(dir, { recursive: true, force: true });
  });
  const profile = join(dir, 'node.json');
  await writeFile(profile, JSON.stringify({ federation: 'disc', bootstrap: [hub.multiaddrs()[0]], heartbeatIntervalMs: 200, memberExpiryMs: 2000 }));
  let out = '';
  let stop!: (why: string) => void;
  const stopped = new Promise<string>((r) => (stop = r));
  t.teardown(() => stop('teardown'));
  const run = main(['--config', profile, '--swarm-key', key, '--state-dir', join(dir, 'n'), '--log-level', 'silent'], {
    stdout: (s) => void (out += s),
    stderr: () => {},
    shutdown: () => stopped,
  });
  await waitFor(() => out.includes(`join ${hub.selfId}`), 'the node joins its bootstrap peer');
  stop('test');
  t.is(await run, 0);
});

test.serial('a bootstrap peer of another private network or off the allowlist is never connected', async (t) => {
  const k1 = freshKey();
  const stranger = await start({ swarmKey: freshKey() });
  const outsider = await start({ swarmKey: k1 });
  const self = await ephemeralIdentity();
  const node = await start({ swarmKey: k1, identity: self, allow: [self.peerId.toString()], bootstrap: [stranger.multiaddrs()[0], outsider.multiaddrs()[0]] });
  t.teardown(() => stopAll([stranger, outsider, node]));
  await waitFor(() => node.dialStatus().length === 2 && node.dialStatus().every((d) => d.cause !== null), 'both bootstrap dials failed with a cause');
  const causes = Object.fromEntries(node.dialStatus().map((d) => [d.peer, d.cause]));
  t.regex(causes[outsider.selfId] ?? '', /allowlist/);
  t.deepEqual(node.connectedPeers(), []);
  t.deepEqual(stranger.connectedPeers(), []);
  t.deepEqual(outsider.connectedPeers(), []);
});
