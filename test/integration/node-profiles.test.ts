/**
 * The profiles in nodes/ are runnable, and advertised capabilities are measured at start: every profile parses
 * (its `fl` section against the full federation schema too) and declares neither device nor throughput; the edge
 * profile starts a real node serving exit 1 over HTTP, the training profile a real node that sees the edge node's
 * measured capabilities in its heartbeats. No timing assertions: measured fields are present, finite, positive.
 */
import test from 'ava';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { FmflNode, resolveNodeConfig } from '../../src/node/index.ts';
import { FederationConfigSchema } from '../../src/round/federation.ts';
import { parseLatencyFeatures } from '../../src/infer/service.ts';
import { silentLogger } from '../../src/util/log.ts';
import { tempDir } from '../temp-dirs.ts';
import { fixtureImage, makeTestCheckpoint } from './infer-helpers.ts';
import { waitFor } from './mesh-helpers.ts';

const FAST = { heartbeatIntervalMs: 200, memberExpiryMs: 3000 };
const positive = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v > 0;

test('every profile in nodes/ parses, its fl section is a valid federation config, and nothing measured is declared', async (t) => {
  const files = (await readdir('nodes')).filter((f) => f.endsWith('.json')).sort();
  t.deepEqual(files, ['edge-small.json', 'fl-site.json', 'fleet-auto.json', 'fleet-edge-slow.json', 'fleet-edge.json', 'fleet-full.json', 'laptop-cpu.json', 'workstation-gpu.json']);
  for (const f of files) {
    const raw = JSON.parse(await readFile(join('nodes', f), 'utf8')) as { capabilities?: Record<string, unknown> };
    t.false('device' in (raw.capabilities ?? {}), `${f}: device is measured`);
    t.false('trainThroughput' in (raw.capabilities ?? {}), `${f}: trainThroughput is measured`);
    const cfg = await resolveNodeConfig({ file: join('nodes', f) });
    t.true(cfg.measureCapabilities, f);
    if (cfg.fl) t.notThrows(() => FederationConfigSchema.parse(cfg.fl), f);
  }
  const train = ['fl-site.json', 'fleet-auto.json', 'fleet-edge-slow.json', 'fleet-edge.json', 'fleet-full.json', 'laptop-cpu.json', 'workstation-gpu.json'];
  for (const f of train) t.truthy((await resolveNodeConfig({ file: join('nodes', f) })).fl, `${f} trains`);
  const edge = await resolveNodeConfig({ file: 'nodes/edge-small.json' });
  t.is(edge.fl, undefined, 'the edge profile does not train');
  t.is(edge.infer?.maxExits, 1);
});

test.serial('nodes start from the edge and the training profiles, measure their capabilities and advertise them', async (t) => {
  t.timeout(180_000);
  const dir = await tempDir('fmfl-profiles-');
  const checkpoint = await makeTestCheckpoint('edge-v1');
  // The profiles as shipped, with what a test must change: its own state folders, loopback ports, the checkpoint.
  const edgeCfg = await resolveNodeConfig({ file: 'nodes/edge-small.json', overrides: { stateDir: join(dir, 'edge'), ...FAST } });
  edgeCfg.infer = { ...edgeCfg.infer!, checkpoint };
  edgeCfg.http = { port: 0, host: '127.0.0.1' };
  const edge = await FmflNode.create(edgeCfg, { logger: silentLogger() });
  t.teardown(() => edge.stop());
  await edge.start();

  const m = edge.measured!;
  t.truthy(m, 'measured at start');
  t.true(m.device === 'cpu' || m.device === 'cuda');
  t.true(positive(m.trainThroughput), String(m.trainThroughput));
  t.is(m.exitLatencyMs.batch1.length, m.exits);
  t.true([...m.exitLatencyMs.batch1, ...m.exitLatencyMs.batch64].every(positive));
  const caps = edge.mesh.membership.getCapabilities();
  t.is(caps.device, m.device);
  t.true(positive(caps.trainThroughput));
  t.is(caps.maxExitDepth, 1, 'the profile caps the exit depth (maxExits 1, maxExitDepth 1)');
  t.is(caps.loraRank, 0, 'the edge node does not train');
  t.true(caps.features.includes('infer'));
  const lat = parseLatencyFeatures(caps.features)!;
  t.is(lat.batch1.length, 1, 'latency of the one exit it serves');
  t.true(lat.batch1.every(positive));

  // The edge node answers an uploaded PNG from exit 1 on its HTTP server.
  const png = await sharp(Buffer.from(await fixtureImage()), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
  const res = await fetch(`${edge.http!.url}/predict`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) });
  t.is(res.status, 200);
  t.is(((await res.json()) as { predictions: { exit: number }[] }).predictions[0].exit, 1);

  const siteCfg = await resolveNodeConfig({ file: 'nodes/fl-site.json', overrides: { stateDir: join(dir, 'site'), listen: ['/ip4/127.0.0.1/tcp/0'], peers: [edge.multiaddrs()[0]], ...FAST } });
  const site = await FmflNode.create(siteCfg, { logger: silentLogger() });
  t.teardown(() => site.stop());
  await site.start();
  const own = site.mesh.membership.getCapabilities();
  t.is(own.loraRank, 8, 'the training profile advertises the rank it trains');
  t.true(positive(own.trainThroughput));
  t.is(parseLatencyFeatures(own.features)?.batch1.length, site.measured!.exits);
  await waitFor(() => site.mesh.membership.get(edge.peerId)?.capabilities.trainThroughput === caps.trainThroughput, 'the site sees the edge node\'s measured capabilities');
  const seen = site.mesh.membership.get(edge.peerId)!.capabilities;
  t.is(seen.device, m.device);
  t.is(seen.maxExitDepth, 1);
});
