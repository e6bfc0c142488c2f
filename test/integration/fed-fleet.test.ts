/**
 * A heterogeneous fleet in one live federation: four real libp2p nodes on 127.0.0.1 train a tiny depth-4 ViT,
 * two of them with a depth budget of 2 and a LoRA rank of 1, two at full depth and rank 2 (the global rank),
 * aggregated with hetlora-zero. Every node ends with the same global state; the shallow nodes' updates (decoded
 * from the bytes they published) carry only blocks 1..2 and exits 1..2; the round's aggregate matches a hand
 * computation of the per-tensor weighting.
 */
import test from 'ava';
import { saveBackbone } from '../../src/model/backbone.ts';
import { VitConfigSchema, backboneSpecs, exitSpecs, initWeights } from '../../src/model/vit.ts';
import { aggregateRound } from '../../src/aggregate/index.ts';
import { Federation, UPDATE_TOPIC } from '../../src/round/index.ts';
import type { MeshPort } from '../../src/round/mesh-port.ts';
import { SignedUpdate } from '../../src/round/pb/round.ts';
import { decodeUpdate, resolveShape, numel, type ModelUpdate } from '../../src/update/index.ts';
import { silentLogger } from '../../src/util/log.ts';
import { tempDir } from '../temp-dirs.ts';
import { tapMeshPort } from '../mesh-port-tap.ts';
import { link, startMeshes, stopAll, topologies, viewsConverged, waitFor } from './mesh-helpers.ts';
import { finalHashes, releaseAll } from './fed-helpers.ts';

const DEEP_VIT = VitConfigSchema.parse({ patch: 7, dim: 16, depth: 4, heads: 2, mlp: 32 });
const N = 4;
/** Nodes 0 and 1: edge (depth 2, rank 1); nodes 2 and 3: full (depth 4, rank 2). */
const budgetOf = (i: number): { maxDepth?: number; rank: number } => (i < 2 ? { maxDepth: 2, rank: 1 } : { rank: 2 });

/** Records every update this node publishes (the signed wire bytes). */
const recording = (inner: MeshPort, sent: Uint8Array[]): MeshPort =>
  tapMeshPort(inner, { publish: (n, payload) => { if (n === UPDATE_TOPIC) sent.push(payload); } });

test.serial('mixed fleet (two depth-2 rank-1 nodes, two full-depth rank-2 nodes): one global state, shallow updates carry only their tensors, per-tensor weighting by hand', async (t) => {
  const dir = await tempDir('fmfl-deep-');
  await saveBackbone('deep', DEEP_VIT, initWeights([...backboneSpecs(DEEP_VIT), ...exitSpecs(DEEP_VIT)], 5), { training: { note: 'random init for tests' }, testAccuracy: [0, 0, 0, 0] }, dir);
  const meshes = await startMeshes(N);
  t.teardown(() => stopAll(meshes));
  link(meshes, topologies.full(N));
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const sent: Uint8Array[][] = meshes.map(() => []);
  const feds = await Promise.all(meshes.map((m, i) => Federation.create(m, {
    backbone: 'deep', backboneDir: dir, rounds: 2, localSteps: 2, batch: 16, shard: `${i}/${N}`, alpha: 0.5, loraAlpha: 4, globalRank: 2,
    loraTargets: ['q', 'v'], testSlice: 32, prototypeSamples: 32, threads: 1, roundTimeoutMs: 8000, leaderTimeoutMs: 2000, lr: 3e-3,
    aggregator: 'hetlora-zero', topk: 1, bits: 32, downlinkBits: 32, errorFeedback: false, partitionSeed: 42, ...budgetOf(i),
  }, { logger: silentLogger(), decorate: (p) => recording(p, sent[i]) })));
  t.teardown(() => releaseAll(feds));
  const metrics = await Promise.all(feds.map((f) => f.run()));

  // One global state on every node, at the global rank.
  const hashes = finalHashes(feds);
  t.is(new Set(hashes).size, 1, `final hashes ${hashes.map((h) => h.slice(0, 8)).join(' ')}`);
  for (const m of metrics) t.deepEqual(m.map((x) => x.version), [1, 2]);
  const manifest = feds[0].manifest;
  const globalState = feds[0].protocol.snapshot().state;
  t.is(globalState.tensors.get('blocks.3.attn.q.lora_a')!.length, 16 * 2, 'the global adapter is at rank 2');
  // Edge nodes serve exits 1..2, full nodes all four.
  t.deepEqual(metrics.map((m) => m[1].accuracy.length), [2, 2, 4, 4]);

  // The updates as published on the wire.
  const decoded: ModelUpdate[][] = sent.map((list) => list.map((b) => decodeUpdate(SignedUpdate.decode(b).update, manifest)));
  const shallowNames = (u: ModelUpdate): boolean => [...u.deltas.keys()].every((k) => /^(blocks|exits)\.[01]\./.test(k));
  for (const i of [0, 1]) {
    t.is(decoded[i].length, 2, `node ${i} published one update per round`);
    for (const u of decoded[i]) {
      t.true(u.partial, 'a depth-2 update says it is partial');
      t.is(u.loraRank, 1);
      t.true(shallowNames(u), `node ${i} sent ${[...u.deltas.keys()].join(', ')}`);
      t.true(u.deltas.has('blocks.1.attn.v.lora_b') && u.deltas.has('exits.1.head.weight'));
      for (const [k, d] of u.deltas) t.is(d.length, numel(resolveShape(manifest.tensors.find((s) => s.name === k)!, 1)), k);
    }
  }
  for (const i of [2, 3]) {
    for (const u of decoded[i]) {
      t.falsy(u.partial);
      t.is(u.loraRank, 2);
      t.true(u.deltas.has('blocks.3.attn.q.lora_a') && u.deltas.has('exits.3.head.weight'));
    }
  }

  // Round 1's aggregate as the leader and every verifying member compute it (aggregateRound over the decoded
  // updates), against a hand computation of the per-tensor weighting: deep tensors are the sample-weighted mean of
  // the two full nodes only; a shared exit head the mean over all four.
  const r1 = decoded.map((l) => l.find((u) => u.round === 1)!);
  t.true(metrics.every((m) => m[0].hash === metrics[0][0].hash), 'one state after round 1');
  const step = { agg: aggregateRound({ rule: 'hetlora-zero', options: { manifest, targetRank: 2 }, updates: r1 }) };
  const n = r1.map((u) => u.sampleCount);
  const deep = 'exits.3.head.weight';
  const wantDeep = r1[2].deltas.get(deep)!.map((x, j) => (n[2] * x + n[3] * r1[3].deltas.get(deep)![j]) / (n[2] + n[3]));
  const shared = 'exits.0.head.bias';
  const total = n.reduce((a, b) => a + b, 0);
  const wantShared = r1[0].deltas.get(shared)!.map((_, j) => r1.reduce((s, u, i) => s + n[i] * u.deltas.get(shared)![j], 0) / total);
  const close = (a: ArrayLike<number>, b: ArrayLike<number>, what: string): void => {
    t.is(a.length, b.length, what);
    for (let j = 0; j < a.length; j++) t.true(Math.abs(a[j] - b[j]) <= 1e-6 * (1 + Math.abs(b[j])), `${what}[${j}]: ${a[j]} vs ${b[j]}`);
  };
  close(step.agg.deltas.get(deep)!, wantDeep, deep);
  close(step.agg.deltas.get(shared)!, wantShared, shared);
  // A rank-1 factor is zero-padded to rank 2 (hetlora-zero): slice 1 of block 0's A is the full nodes' share alone.
  const a = 'blocks.0.attn.q.lora_a';
  const agg = step.agg.deltas.get(a)!;
  for (let row = 0; row < 16; row++) {
    const s0 = r1.reduce((s, u, i) => s + n[i] * u.deltas.get(a)![row * u.loraRank], 0) / total;
    const s1 = (n[2] * r1[2].deltas.get(a)![row * 2 + 1] + n[3] * r1[3].deltas.get(a)![row * 2 + 1]) / total;
    close([agg[row * 2], agg[row * 2 + 1]], [s0, s1], `${a} row ${row}`);
  }
});
