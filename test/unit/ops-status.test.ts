import test from 'ava';
import { readFile } from 'node:fs/promises';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { RefusalReason } from '../../src/mesh/errors.ts';
import { classifyDialError } from '../../src/mesh/dial-errors.ts';
import * as L from '../../src/ops/limits.ts';
import { FmflMetrics, formatStatus, parsePeerStatus, STATUS_REQUEST_TIMEOUT_MS, type StatusDocument } from '../../src/ops/index.ts';
import { QUICK_CLOSE_MS } from '../../src/mesh/index.ts';

const enc = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
const peerId = async (): Promise<string> => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString();

test('every operations limit is listed in protocols/LIMITS.md with its value', async (t) => {
  const doc = await readFile('protocols/LIMITS.md', 'utf8');
  const all: Record<string, unknown> = { ...L, STATUS_REQUEST_TIMEOUT_MS, QUICK_CLOSE_MS };
  for (const [name, value] of Object.entries(all)) {
    const row = doc.split('\n').find((l) => l.includes(`\`${name}\``));
    t.truthy(row, `${name} missing from LIMITS.md`);
    t.true(row!.replace(/[ ,_]/g, '').includes(String(value)), `${name}: LIMITS.md must show ${String(value)}`);
  }
});

test('every fmfl metric is documented in the README with its labels', async (t) => {
  const readme = await readFile('README.md', 'utf8');
  const m = new FmflMetrics();
  const metrics = await m.registry.getMetricsAsJSON();
  t.true(metrics.length >= 10);
  for (const x of metrics) {
    const row = readme.split('\n').find((l) => l.startsWith(`| \`${x.name}\``));
    t.truthy(row, `${x.name} missing from the README metrics table`);
  }
  // Series registered at scrape time from the mesh, or at their first value, are documented too.
  for (const name of ['fmfl_members', 'fmfl_connected_peers', 'fmfl_wire_bytes', 'fmfl_dp_epsilon', 'fmfl_consensus_distance']) t.true(readme.includes(`| \`${name}\``), name);
});

test('fmfl_dp_epsilon and fmfl_consensus_distance are absent until a round reports them (no 0 that reads as a value)', async (t) => {
  const m = new FmflMetrics();
  const round = { node: 'n', round: 1, version: 1, hash: 'h', protocol: 'leader' as const, via: 'led' as const, contributors: 2, trainLoss: 0.5, accuracy: [0.5, 0.6], ensembleAccuracy: 0.55, bytesUp: 10, bytesDown: 20, updateBytes: 10, trainMs: 1, roundMs: 1000 };
  m.round(round);
  let text = (await m.text()).body;
  t.regex(text, /^fmfl_accuracy\{exit="2"\} 0\.6$/m);
  t.false(text.includes('fmfl_dp_epsilon'), 'no DP: no epsilon series');
  t.false(text.includes('fmfl_consensus_distance'), 'leader protocol: no consensus series');
  m.round({ ...round, round: 2, version: 2, protocol: 'gossip', via: 'mixed', epsilon: 1.25, consensusDistance: 0.003 });
  m.round({ ...round, round: 3, version: 3, protocol: 'gossip', via: 'mixed', epsilon: 1.5, consensusDistance: 0.002 });
  text = (await m.text()).body;
  t.regex(text, /^fmfl_dp_epsilon 1\.5$/m);
  t.regex(text, /^fmfl_consensus_distance 0\.002$/m);
});

test('ops.status answers are parsed strictly: size, UTF-8 JSON, schema, PeerIds', async (t) => {
  const id = await peerId();
  const ok = { v: 1, round: 4, phase: 'training', neighbours: [id] };
  t.deepEqual(parsePeerStatus(enc(ok)), ok);
  t.deepEqual(parsePeerStatus(enc({ ...ok, round: null, phase: 'idle', neighbours: [] })), { v: 1, round: null, phase: 'idle', neighbours: [] });
  t.is(parsePeerStatus(new Uint8Array(L.MAX_PEER_STATUS_BYTES + 1)), RefusalReason.OVERSIZED);
  t.is(parsePeerStatus(enc('{"v":1,')), RefusalReason.MALFORMED);
  t.is(parsePeerStatus(new Uint8Array([0x7b, 0xff, 0x7d])), RefusalReason.MALFORMED, 'invalid UTF-8');
  t.is(parsePeerStatus(enc({ ...ok, v: 2 })), RefusalReason.INVALID_FIELD);
  t.is(parsePeerStatus(enc({ ...ok, extra: 1 })), RefusalReason.INVALID_FIELD, 'unknown keys');
  t.is(parsePeerStatus(enc({ ...ok, round: -1 })), RefusalReason.INVALID_FIELD);
  t.is(parsePeerStatus(enc({ ...ok, round: 1.5 })), RefusalReason.INVALID_FIELD);
  t.is(parsePeerStatus(enc({ ...ok, phase: 'hacking' })), RefusalReason.INVALID_FIELD);
  t.is(parsePeerStatus(enc({ ...ok, neighbours: ['12D3KooWnot'] })), RefusalReason.INVALID_FIELD);
  t.is(parsePeerStatus(enc({ ...ok, neighbours: new Array(L.MAX_PEER_STATUS_NEIGHBOURS + 1).fill(id) })), RefusalReason.INVALID_FIELD);
  t.is(parsePeerStatus(enc([ok])), RefusalReason.INVALID_FIELD);
});

test('dial errors are classified by name and code', (t) => {
  const err = (name: string, message: string, code?: string): Error => Object.assign(new Error(message), { name, code });
  t.is(classifyDialError(err('Error', 'connect ECONNREFUSED 127.0.0.1:1', 'ECONNREFUSED'), { swarmKey: false }).cause, 'unreachable');
  t.is(classifyDialError(err('Error', 'x', 'EHOSTUNREACH'), { swarmKey: false }).cause, 'unreachable');
  t.is(classifyDialError(err('EncryptionFailedError', 'message length length too long'), { swarmKey: false }).cause, 'swarm-key');
  t.is(classifyDialError(err('DialDeniedError', 'The dial request is blocked by gater.allowDialPeer'), { swarmKey: false }).cause, 'not-allowlisted-here');
  const slow = classifyDialError(err('TimeoutError', 'The operation was aborted due to timeout'), { swarmKey: true });
  t.is(slow.cause, 'timeout');
  t.regex(slow.hint, /swarm key mismatch/, 'with a swarm key, a stalled handshake may be a key mismatch');
  t.is(classifyDialError('weird', { swarmKey: false }).cause, 'other');
});

test('fmfl-node status renders members, round, leader and bytes, and strips control characters a peer sent', (t) => {
  const doc: StatusDocument = {
    v: 1, timeMs: 10_000,
    node: { id: 'self-id', federation: 'f', addrs: [], startedMs: 0, name: null, checkpoint: null },
    members: [
      { id: 'self-id', self: true, addrs: [], capabilities: { device: 'cpu', trainThroughput: 0, maxExitDepth: 0, datasetSize: 0, loraRank: 0, features: [] }, lastSeenMs: 10_000, joinedMs: 0, connected: true, round: 2, phase: 'training', rttMs: null, neighbours: ['peer-b'] },
      { id: 'peer-b', self: false, addrs: [], capabilities: { device: 'gpu\u001b[31m', trainThroughput: 0, maxExitDepth: 0, datasetSize: 0, loraRank: 0, features: [] }, lastSeenMs: 9_000, joinedMs: 0, connected: true, round: 2, phase: 'exchanging', rttMs: 1.25, neighbours: ['self-id'] },
    ],
    mesh: { edges: [['peer-b', 'self-id']] },
    federation: {
      protocol: 'leader', rounds: 5, round: 2, phase: 'training', minMembers: 2,
      current: { round: 3, leader: 'peer-b', startedMs: 0, deadlineMs: null, step: 4, steps: 10 },
      last: null, epsilon: null, consensusDistance: null, stepsPerSecond: null, stoppedBy: null,
    },
    rounds: [], refusals: { byReason: { STALE: 3 }, recent: [] },
    bytes: { wireIn: 1500, wireOut: 2_500_000, updateUp: 10, updateDown: 20 }, dialing: [],
  };
  const out = formatStatus(doc);
  t.regex(out, /^round 2\/5 {2}phase training \(step 4\/10\) {2}protocol leader {2}leader peer-b$/m);
  t.regex(out, /^self-id \* +cpu +2 +training +- +now +self$/m);
  t.regex(out, /^peer-b +gpu\?\[31m +2 +exchanging +1\.3ms +1s ago +direct$/m);
  t.regex(out, /updates up 10 B down 20 B; wire in 1\.5 KB out 2\.5 MB/);
  t.regex(out, /refusals: STALE 3/);
  t.false(out.includes('\u001b'));
});
