/**
 * The end of an in-process simulation (many Federation + Mesh pairs in one Node.js process): freeze every node's
 * final model, stop every protocol and mesh at once, then evaluate each distinct final model once.
 *
 * Why this order (issue 17): with N in-process meshes every membership heartbeat is signature-checked by the other
 * N-1 meshes on the same event loop, so the process spends O(N²) work per heartbeat interval on gossip alone. At 32
 * nodes that took ~80% of the main thread (a CPU profile: ed25519 verification ~28%, Noise/Yamux plumbing most of the
 * rest, onnxruntime 2.5%), and the old final evaluation (N full test-split passes, one after the other, meshes still
 * running) then crawled for tens of minutes. A stopped mesh costs nothing; the evaluation needs only the trainer and
 * the model, and leader-protocol nodes (and gossip nodes holding the same replicas) end on the same model.
 */
import { createHash } from 'node:crypto';
import type { Dataset } from '../../src/data/index.ts';
import type { Mesh } from '../../src/mesh/index.ts';
import type { Federation } from '../../src/round/index.ts';

export interface FinalEval {
  node: number;
  accuracy: number[];
  ensembleAccuracy: number;
  /** Global-state hash (protocol snapshot), as in the round metrics. */
  hash: string;
  /** Digest of the evaluated model's tensors: nodes with equal digests share one evaluation. */
  modelDigest: string;
}

export interface FinishResult {
  finals: FinalEval[];
  /** Distinct final models (= evaluations run). */
  evaluations: number;
  stopMs: number;
  evalMs: number;
}

/** SHA-256 over a model's tensors in name order (values as float32 bytes). */
export function modelDigest(tensors: ReadonlyMap<string, Float32Array>): string {
  const h = createHash('sha256');
  for (const k of [...tensors.keys()].sort()) {
    const v = tensors.get(k)!;
    h.update(k);
    h.update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  }
  return h.digest('hex');
}

/**
 * After every node's `run` has settled: snapshot each surviving node's model (gossip's model depends on the live
 * membership view, so before stopping), stop all federations and meshes concurrently, then evaluate each distinct
 * model on `test` (all of it unless `indices`) with the trainer of the first node holding it. Releases nothing:
 * the caller still owns the federations (their trainers) and may `release()` them.
 */
export async function finishInproc(o: {
  feds: readonly (Federation | null)[];
  meshes: readonly (Mesh | null)[];
  test: Dataset;
  indices?: ArrayLike<number>;
  onEval?: (e: { node: number; nodes: number; ms: number }) => void;
}): Promise<FinishResult> {
  const frozen = o.feds.map((f) => {
    if (!f) return null;
    const tensors = new Map([...f.protocol.model()].map(([k, v]) => [k, Float32Array.from(v)]));
    return { tensors, digest: modelDigest(tensors), hash: Buffer.from(f.protocol.snapshot().state.hash).toString('hex').slice(0, 16) };
  });
  const t0 = performance.now();
  await Promise.all(o.feds.map(async (f) => f?.stop().catch(() => {})));
  await Promise.all(o.meshes.map(async (m) => m?.stop().catch(() => {})));
  const stopMs = performance.now() - t0;
  const byDigest = new Map<string, number[]>();
  frozen.forEach((fz, i) => {
    if (!fz) return;
    // Nodes share an evaluation when they hold the same model and the same budget (depth, rank) to run it at.
    const f = o.feds[i]!;
    const key = `${fz.digest}:${f.trainer.depth}:${f.budget.rank}`;
    const list = byDigest.get(key) ?? [];
    list.push(i);
    byDigest.set(key, list);
  });
  const finals: FinalEval[] = [];
  const t1 = performance.now();
  for (const [digest, nodes] of byDigest) {
    const te = performance.now();
    const trainer = o.feds[nodes[0]]!.trainer;
    trainer.loadParams(o.feds[nodes[0]]!.modelAtBudget(frozen[nodes[0]]!.tensors));
    const ev = await trainer.evaluate(o.test, o.indices);
    o.onEval?.({ node: nodes[0], nodes: nodes.length, ms: performance.now() - te });
    for (const i of nodes) finals.push({ node: i, accuracy: ev.accuracy, ensembleAccuracy: ev.ensembleAccuracy, hash: frozen[i]!.hash, modelDigest: frozen[i]!.digest });
  }
  finals.sort((a, b) => a.node - b.node);
  return { finals, evaluations: byDigest.size, stopMs, evalMs: performance.now() - t1 };
}

/** Longest in-process membership heartbeat period (inprocHeartbeat); the expiry is 6x (6 minutes). */
export const INPROC_HEARTBEAT_MAX_MS = 60_000;

/**
 * Membership heartbeat period and expiry for N meshes in one process: 1 s / 6 s up to 16 nodes (what the process
 * mode uses), then growing with N³ so that the process-wide rate of heartbeat signature checks, N·(N-1) per period,
 * falls below that of 16 nodes (~240/s; 124/s at 32 nodes, 8 s) instead of growing with N². With N²
 * (4 s at 32 nodes) a 32-node run at load average 17-26 refused thousands of heartbeats as stale (older than the
 * 24 s expiry when they arrived) and every view fell to 0 during round 1; with 8 s the views held at 16..31.
 * Capped at INPROC_HEARTBEAT_MAX_MS (60 s, reached at 64 nodes): with the former 15 s cap, 64 full-mesh nodes with the
 * default model received 270-400 heartbeats a second process-wide (first copies, relaying already off), garbage
 * collection took 31% of the main thread and onnxruntime 11%, and in 7 minutes after the views filled only 2 of 64
 * nodes finished their 5 local steps; with 60 s all 64 finished round 1 about 3 minutes after the first dial.
 * One node per process only checks N-1 heartbeats per period and keeps the 1 s default. `overrideMs` (a
 * --heartbeat-ms flag) wins.
 */
export function inprocHeartbeat(n: number, overrideMs?: number): { heartbeatIntervalMs: number; memberExpiryMs: number } {
  const ms = overrideMs ?? Math.min(INPROC_HEARTBEAT_MAX_MS, Math.round(1000 * Math.max(1, (n / 16) ** 3)));
  return { heartbeatIntervalMs: ms, memberExpiryMs: 6 * ms };
}

/**
 * Latency (ms) given to every frame of the memory transport in an in-process simulation. With 0, @libp2p/memory
 * hands each frame to the peer as a resolved promise: a message, its forwards, the Noise and Yamux frames and the
 * replies they trigger all run as one chain of microtasks, and no timer (membership heartbeats and expiry, round
 * deadlines, request timeouts, the simulator's status line) fires until the whole process falls quiet. At 64 nodes
 * it never does (issue 17: a 10 s status timer fired after 75 s, then not for minutes; round 1 never started). Any
 * latency above 0 sends each frame through a timer, so the event loop turns between frames.
 */
export const INPROC_MEMORY_LATENCY_MS = 1;

/**
 * Mesh `loopYieldMs` in process: off. It lets the memory transport run at latency 0 without starving the timers
 * (inbound chunks wait for the next loop turn once the loop has not turned for that many ms), which also removes the
 * one-chunk-per-loop-turn serialisation of @libp2p/memory's latency (it awaits one timer per chunk, one after the
 * other). Measured 2026-12-03: at 32 nodes it did not keep the views up (STALE heartbeats either way), and at latency 0
 * with a 5 ms gate the 8-node leader bench:scale run hung (under 20% CPU for 6 minutes, not diagnosed), while with 1 ms
 * latency it finished (5.9 s per round). Kept as an option for that diagnosis.
 */
export const INPROC_LOOP_YIELD_MS = 0;

/** Dial and inbound-upgrade deadline in process: a handshake's turns wait behind every other node's work on one loop. */
export const INPROC_DIAL_TIMEOUT_MS = 60_000;

/**
 * Period of the gossipsub outbound-stream repair in process (Mesh `gossipStreamRepairMs`, src/mesh/gossip-repair.ts):
 * at 64 nodes 126 of 4,032 connection ends never got their one gossipsub stream and the views never filled.
 */
export const INPROC_GOSSIP_REPAIR_MS = 5_000;

/**
 * Mesh options of each mesh in an N-node in-process simulation: the membership heartbeat (inprocHeartbeat), the memory
 * latency (INPROC_MEMORY_LATENCY_MS), no connection monitor (Mesh `connectionPingMs`: its pings of all N·(N-1)
 * connection ends came in one burst every 10 s and, timing out on the busy loop, aborted healthy connections), and a
 * gossipsub heartbeat of 1 s up to 16 nodes, then N/16 s (mesh upkeep and IHAVE gossip of N meshes; messages
 * themselves are flood-published, so this is repair traffic only), a dial / upgrade / stream-negotiation deadline of
 * INPROC_DIAL_TIMEOUT_MS, and the gossipsub outbound-stream repair every INPROC_GOSSIP_REPAIR_MS. `fullMesh` (every node
 * dials every other): membership heartbeats are not relayed (Mesh `relayHeartbeats: false`): the author's flood
 * publish already reaches every member, and each relayed copy is a duplicate to frame, decrypt and drop.
 */
export function inprocMeshOptions(n: number, o: { heartbeatMs?: number; memoryLatencyMs?: number; fullMesh?: boolean } = {}): {
  heartbeatIntervalMs: number; memberExpiryMs: number; memoryLatencyMs: number; connectionPingMs: number; gossipHeartbeatMs: number; dialTimeoutMs: number;
  streamNegotiationTimeoutMs: number; gossipStreamRepairMs: number; loopYieldMs: number; relayHeartbeats: boolean;
} {
  return {
    relayHeartbeats: o.fullMesh !== true,
    dialTimeoutMs: INPROC_DIAL_TIMEOUT_MS,
    streamNegotiationTimeoutMs: INPROC_DIAL_TIMEOUT_MS,
    gossipStreamRepairMs: INPROC_GOSSIP_REPAIR_MS,
    loopYieldMs: INPROC_LOOP_YIELD_MS,
    ...inprocHeartbeat(n, o.heartbeatMs), memoryLatencyMs: o.memoryLatencyMs ?? INPROC_MEMORY_LATENCY_MS, connectionPingMs: 0,
    gossipHeartbeatMs: Math.round(1000 * Math.max(1, n / 16)),
  };
}

/**
 * Link in-process meshes along `edges` ([a, b]: b dials a) one dialling node at a time: node b's dials start once
 * the previous node's have connected (or `waveTimeoutMs` passed). Dialled all at once, a full 64-node mesh is 2,016
 * Noise handshakes on one event loop: each loop turn took seconds, handshakes outlived the 10 s dial and upgrade
 * deadlines, and the failed dials' redials kept every node at 0..30 connections for minutes (issue 17). Dials that
 * have not connected when a wave times out go on (redialled with backoff) while the next wave starts. A dial counts
 * once both ends list the connection. Returns the time it took.
 */
export async function linkInWaves(
  meshes: readonly Mesh[], edges: readonly [number, number][],
  o: { waveTimeoutMs?: number; onWave?: (w: { node: number; dials: number; connected: number; ms: number }) => void } = {},
): Promise<number> {
  const t0 = performance.now();
  const byDialer = new Map<number, number[]>();
  for (const [a, b] of edges) byDialer.set(b, [...(byDialer.get(b) ?? []), a]);
  for (const [b, targets] of [...byDialer].sort((x, y) => x[0] - y[0])) {
    for (const a of targets) meshes[b].addPeer(meshes[a].multiaddrs()[0]);
    const want = targets.map((a) => meshes[a].peerId.toString());
    const self = meshes[b].peerId.toString();
    const tw = performance.now();
    const end = tw + (o.waveTimeoutMs ?? 30_000);
    let connected = 0;
    while (performance.now() < end) {
      const have = new Set(meshes[b].connectedPeers());
      // Both ends: the dialer counts a connection before the listener has finished its inbound upgrade (a wave
      // that moved on then left the last node linked on its side only: "10 of 11" peers seen by the others).
      connected = targets.filter((a, k) => have.has(want[k]) && meshes[a].connectedPeers().includes(self)).length;
      if (connected === want.length) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    o.onWave?.({ node: b, dials: want.length, connected, ms: performance.now() - tw });
  }
  return performance.now() - t0;
}
