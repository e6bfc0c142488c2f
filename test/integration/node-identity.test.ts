import test from 'ava';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FmflNode, parseNodeConfig, resolveNodeConfig, PEERS_CACHE_FILE } from '../../src/node/index.ts';
import { loadOrCreateIdentity, IDENTITY_FILE, MeshError } from '../../src/mesh/index.ts';
import { ConfigError } from '../../src/util/errors.ts';
import { main } from '../../src/cli/main.ts';
import { silentLogger } from '../../src/util/log.ts';
import { waitFor } from './mesh-helpers.ts';

const FAST_NODE = { heartbeatIntervalMs: 200, memberExpiryMs: 1500 };
const fastOpts = { logger: silentLogger(), gossipHeartbeatMs: 200, redialBaseMs: 100, redialMaxMs: 1000 };

async function tmp(t: import('ava').ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fmfl-node-'));
  t.teardown(async () => rm(dir, { recursive: true, force: true }));
  return dir;
}

test.serial('identity survives a restart; peers cache is flushed on stop', async (t) => {
  const dirA = await tmp(t);
  const dirB = await tmp(t);
  const nodes: FmflNode[] = [];
  t.teardown(async () => Promise.all(nodes.map(async (n) => n.stop().catch(() => {}))));

  const a1 = await FmflNode.create({ stateDir: dirA, federation: 'idt', ...FAST_NODE }, fastOpts);
  nodes.push(a1);
  await a1.start();
  const idA = a1.peerId;
  const b = await FmflNode.create({ stateDir: dirB, federation: 'idt', peers: [a1.multiaddrs()[0]], ...FAST_NODE }, fastOpts);
  nodes.push(b);
  await b.start();
  await waitFor(() => a1.mesh.membership.memberIds().includes(b.peerId), 'a sees b');
  await a1.stop();
  t.deepEqual(await readdir(dirA).then((f) => f.sort()), [IDENTITY_FILE, PEERS_CACHE_FILE].sort());
  const cached = JSON.parse(await readFile(join(dirA, PEERS_CACHE_FILE), 'utf8')) as string[];
  t.true(cached.length === 1 && cached[0].endsWith(`/p2p/${b.peerId}`));

  const a2 = await FmflNode.create({ stateDir: dirA, federation: 'idt', ...FAST_NODE }, fastOpts);
  nodes.push(a2);
  t.is(a2.peerId, idA, 'same PeerId after restart');
  await a2.start();
  // a2 has no --peers: it finds b again through the peers cache.
  await waitFor(() => a2.mesh.membership.memberIds().includes(b.peerId), 'restarted a rejoins b via the peers cache');
  t.is((await loadOrCreateIdentity(dirA)).peerId.toString(), idA);
});

test.serial('a listen address already in use is a MeshError that says what to do', async (t) => {
  const a = await FmflNode.create({ federation: 'idt', ...FAST_NODE }, fastOpts);
  t.teardown(async () => a.stop());
  await a.start();
  const port = /\/tcp\/(\d+)\//.exec(a.multiaddrs()[0])![1];
  const b = await FmflNode.create({ federation: 'idt', listen: [`/ip4/127.0.0.1/tcp/${port}`], ...FAST_NODE }, fastOpts);
  const err = await t.throwsAsync(b.start(), { instanceOf: MeshError });
  t.regex(err.message, new RegExp(`tcp/${port}: address already in use; pick another --listen port`));
  t.false(b.mesh.isRunning);
});

test('a corrupt identity file is a ConfigError that says what to do', async (t) => {
  const dir = await tmp(t);
  await writeFile(join(dir, IDENTITY_FILE), 'not a key');
  const err = await t.throwsAsync(loadOrCreateIdentity(dir), { instanceOf: ConfigError });
  t.regex(err.message, /corrupt.*move it away/);
});

test('an identity file whose public key does not match its private key is a ConfigError; the CLI exits 2 with the fix', async (t) => {
  const dir = await tmp(t);
  const good = await loadOrCreateIdentity(dir);
  const bytes = Uint8Array.from(await readFile(join(dir, IDENTITY_FILE)));
  t.is((await loadOrCreateIdentity(dir)).peerId.toString(), good.peerId.toString(), 'an intact file loads');
  bytes[bytes.length - 1] ^= 1; // last byte of the stored public key
  await writeFile(join(dir, IDENTITY_FILE), bytes);
  const err = await t.throwsAsync(loadOrCreateIdentity(dir), { instanceOf: ConfigError });
  t.regex(err.message, /public key does not match its private key.*restore it from a backup.*move it away/);
  const out: string[] = [];
  const code = await main(['id', '--state-dir', dir], { stdout: (s: string) => out.push(s), stderr: (s: string) => out.push(s) });
  t.is(code, 2);
  t.regex(out.join(''), /does not match its private key/);
});

test('config validation names every bad key', (t) => {
  const err = t.throws(
    () => parseNodeConfig({ federation: 'bad name!', peers: ['/ip4/1.2.3.4/tcp/1'], heartbeatIntervalMs: 5000, memberExpiryMs: 1000, bogus: 1 }),
    { instanceOf: ConfigError },
  );
  t.regex(err.message, /federation/);
  t.regex(err.message, /peers\.0: .*\/p2p/);
  t.regex(err.message, /bogus|Unrecognized/);
  t.throws(() => parseNodeConfig({ heartbeatIntervalMs: 5000, memberExpiryMs: 1000 }), { message: /memberExpiryMs must be greater/ });
  t.throws(() => parseNodeConfig({ allow: ['not-a-peer-id'] }), { message: /allow\.0/ });
  t.throws(() => parseNodeConfig({ capabilities: { trainThroughput: -1 } }), { message: /capabilities\.trainThroughput/ });
  const ok = parseNodeConfig({});
  t.is(ok.federation, 'default');
  t.deepEqual(ok.listen, ['/ip4/127.0.0.1/tcp/0']);
});

test('every profile in nodes/ validates, and flags override it', async (t) => {
  const files = (await readdir('nodes')).filter((f) => f.endsWith('.json'));
  t.true(files.length >= 3);
  for (const f of files) {
    const cfg = await resolveNodeConfig({ file: join('nodes', f) });
    t.is(cfg.federation, 'demo', f);
  }
  // The federated profile's "fl" section validates against the federation schema and merges with flag overrides.
  const fl = await resolveNodeConfig({ file: 'nodes/fl-site.json', overrides: { fl: { rounds: 3 } } });
  t.is(fl.fl?.rounds, 3);
  t.is(fl.fl?.shard, '3/8');
  await t.throwsAsync(resolveNodeConfig({ overrides: { fl: { topk: 2 } } as never }), { instanceOf: ConfigError, message: /fl\.topk/ });
  const over = await resolveNodeConfig({ file: 'nodes/laptop-cpu.json', overrides: { federation: 'x', capabilities: { loraRank: 8 }, stateDir: undefined } });
  t.is(over.federation, 'x');
  t.is(over.capabilities.loraRank, 8);
  t.is(over.capabilities.device, 'cpu', 'capabilities merge key by key');
  await t.throwsAsync(resolveNodeConfig({ file: 'nodes/does-not-exist.json' }), { instanceOf: ConfigError, message: /cannot read config file/ });
});
