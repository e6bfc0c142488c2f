/**
 * `npm run bench:mesh -- [--json] [--n 4,8,16] [--reps-small 20] [--reps-large 6] [--degree 3] [--seed 1]
 *   [--transport tcp|memory] [--latency <ms per buffer, memory only>]`
 *
 * For each N, starts N in-process mesh nodes on 127.0.0.1 (TCP + Noise + Yamux) in a seeded random
 * k-regular topology (full mesh when N <= degree + 1), then measures:
 * - membership convergence: from the first dial until every view lists the N-1 others;
 * - delivery of a 1 kB (inline gossip) and a 1 MB (announce + stream pull) message: time from publish until
 *   the last other node's handler ran; median and p95 over the repetitions, publishers drawn by the seed;
 * - bytes on the wire per node (raw socket bytes in + out, including Noise/Yamux overhead and the
 *   background heartbeats during the batch), per message, and in total.
 * Not part of `npm test`. Heartbeats: 500 ms, gossipsub heartbeat: 500 ms.
 */
import { createMesh, type Mesh } from '../src/mesh/index.ts';
import { Rng } from '../src/util/rng.ts';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const JSON_ONLY = process.argv.includes('--json');
const NS = arg('n', '4,8,16').split(',').map(Number);
const REPS_SMALL = Number(arg('reps-small', '20'));
const REPS_LARGE = Number(arg('reps-large', '6'));
const DEGREE = Number(arg('degree', '3'));
const SEED = Number(arg('seed', '1'));
const TRANSPORT = arg('transport', 'tcp');
const LATENCY_MS = Number(arg('latency', '0'));
if (TRANSPORT !== 'tcp' && TRANSPORT !== 'memory') throw new Error('--transport must be tcp or memory');
const DEADLINE_MS = 60_000;

const log = (s: string): void => {
  if (!JSON_ONLY) process.stderr.write(s + '\n');
};

function regular(n: number, k: number, rng: Rng): Array<[number, number]> {
  if (n <= k + 1) {
    const e: Array<[number, number]> = [];
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) e.push([i, j]);
    return e;
  }
  for (;;) {
    const halfEdges = rng.shuffle(Array.from({ length: n * k }, (_, i) => Math.floor(i / k)));
    const seen = new Set<string>();
    const edges: Array<[number, number]> = [];
    let ok = true;
    for (let i = 0; i < halfEdges.length && ok; i += 2) {
      const a = Math.min(halfEdges[i], halfEdges[i + 1]);
      const b = Math.max(halfEdges[i], halfEdges[i + 1]);
      if (a === b || seen.has(`${a}-${b}`)) ok = false;
      seen.add(`${a}-${b}`);
      edges.push([a, b]);
    }
    if (!ok) continue;
    const adj = Array.from({ length: n }, () => [] as number[]);
    for (const [a, b] of edges) (adj[a].push(b), adj[b].push(a));
    const vis = new Set([0]);
    const st = [0];
    while (st.length > 0) for (const x of adj[st.pop()!]) if (!vis.has(x)) (vis.add(x), st.push(x));
    if (vis.size === n) return edges;
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + DEADLINE_MS;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.ceil(q * s.length) - 1);
  return Math.round(s[Math.max(0, i)] * 10) / 10;
}

const wireTotal = (ms: Mesh[]): number => ms.reduce((s, m) => s + m.wire.bytesIn + m.wire.bytesOut, 0);

async function runN(n: number, rng: Rng): Promise<Record<string, unknown>> {
  const meshes: Mesh[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const listen = TRANSPORT === 'memory' ? [`/memory/fmfl-bench-${n}-${i}`] : ['/ip4/127.0.0.1/tcp/0'];
      const m = await createMesh({
        federation: 'bench',
        listen,
        memoryLatencyMs: LATENCY_MS,
        heartbeatIntervalMs: 500,
        memberExpiryMs: 5000,
        gossipHeartbeatMs: 500,
      });
      await m.start();
      meshes.push(m);
    }
    const arrivals = new Map<number, number>();
    let current = -1;
    meshes.forEach((m) =>
      m.subscribe('bench', (p) => {
        const id = new DataView(p.buffer, p.byteOffset, 4).getUint32(0);
        if (id === current) arrivals.set(id, (arrivals.get(id) ?? 0) + 1);
      }),
    );
    const edges = regular(n, DEGREE, rng);
    const t0 = performance.now();
    for (const [a, b] of edges) meshes[b].addPeer(meshes[a].multiaddrs()[0]);
    await until(() => meshes.every((m) => m.membership.memberIds().length === n - 1), 'membership convergence');
    const convergeMs = Math.round(performance.now() - t0);
    await until(() => meshes.every((m) => m.topicPeers('bench').length >= Math.min(DEGREE, n - 1)), 'topic subscriptions');
    // One gossipsub heartbeat so the topic mesh is grafted before timing.
    await new Promise((r) => setTimeout(r, 1100));
    log(`N=${n}: ${edges.length} links, membership converged in ${convergeMs} ms`);

    const result: Record<string, unknown> = { n, links: edges.length, degree: Math.min(DEGREE, n - 1), membershipConvergeMs: convergeMs };
    let msgId = 0;
    for (const [label, size, reps] of [['1kB', 1024, REPS_SMALL], ['1MB', 1024 * 1024, REPS_LARGE]] as const) {
      const times: number[] = [];
      const w0 = wireTotal(meshes);
      for (let r = 0; r < reps; r++) {
        const payload = new Uint8Array(size);
        for (let i = 4; i < size; i += 4096) payload[i] = rng.int(256);
        current = ++msgId;
        new DataView(payload.buffer).setUint32(0, current);
        const src = rng.int(n);
        const start = performance.now();
        await meshes[src].publish('bench', payload);
        await until(() => (arrivals.get(current) ?? 0) >= n - 1, `delivery of a ${label} message`);
        times.push(performance.now() - start);
      }
      const perNodePerMsg = Math.round((wireTotal(meshes) - w0) / n / reps);
      result[label] = { reps, medianMs: quantile(times, 0.5), p95Ms: quantile(times, 0.95), wireBytesPerNodePerMessage: perNodePerMsg };
      log(`  ${label}: median ${quantile(times, 0.5)} ms, p95 ${quantile(times, 0.95)} ms, ${perNodePerMsg} wire bytes/node/message`);
    }
    result.wireBytesPerNodeTotal = Math.round(wireTotal(meshes) / n);
    return result;
  } finally {
    await Promise.all(meshes.map(async (m) => m.stop().catch(() => {})));
  }
}

const rng = new Rng(SEED);
const results = [];
for (const n of NS) results.push(await runN(n, rng));
const out = {
  bench: 'mesh',
  node: process.version,
  transport: TRANSPORT === 'tcp' ? 'tcp 127.0.0.1 + noise + yamux, one process' : `memory (latency ${LATENCY_MS} ms) + noise + yamux, one process`,
  topology: `seeded random ${DEGREE}-regular (full mesh when N <= ${DEGREE + 1})`,
  heartbeatMs: 500,
  seed: SEED,
  results,
};
console.log(JSON.stringify(out, null, 2));
