/**
 * `npx tsx scripts/diag-inproc-mesh.ts [N=64] [seconds=240]`: N meshes (no federation) in one process over the memory
 * transport with the simulator's in-process options, linked in waves as a full mesh; every 10 s one line: open
 * connections, connection ends without a gossipsub outbound stream, gossipsub's outbound-stream repairs so far,
 * membership views (min / p50 / max of N-1, and how many are full), event-loop lag, RSS. Stops when every view is full
 * (prints CONVERGED) or after `seconds`. The issue-17 diagnosis of 64 nodes that never reached round 1.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createMesh, type Mesh } from '../src/mesh/index.ts';
import { inprocMeshOptions, linkInWaves } from './lib/inproc.ts';

const N = Number(process.argv[2] ?? 64);
const LIMIT_S = Number(process.argv[3] ?? 240);
const opts = inprocMeshOptions(N);
const lag = monitorEventLoopDelay({ resolution: 50 });
lag.enable();
const meshes: Mesh[] = [];
for (let i = 0; i < N; i++) {
  const m = await createMesh({ federation: 'diag', listen: [`/memory/diag-${process.pid}-${i}`], ...opts });
  await m.start();
  meshes.push(m);
}
const outbound = (m: Mesh): Map<string, unknown> => (m.libp2p.services.pubsub as unknown as { streamsOutbound: Map<string, unknown> }).streamsOutbound;
const t0 = performance.now();
const stat = (): string => {
  let conns = 0;
  let missing = 0;
  for (const m of meshes) {
    for (const c of m.libp2p.getConnections()) {
      conns++;
      if (!outbound(m).has(c.remotePeer.toString())) missing++;
    }
  }
  const v = meshes.map((m) => m.membership.memberIds().length).sort((a, b) => a - b);
  const repairs = meshes.reduce((a, m) => a + m.gossipRepairs.attempts, 0);
  return `t=${((performance.now() - t0) / 1000).toFixed(0)}s connections=${conns} withoutGossipStream=${missing} repairs=${repairs} ` +
    `views min=${v[0]} p50=${v[N >> 1]} max=${v.at(-1)} full=${v.filter((x) => x === N - 1).length}/${N} ` +
    `lag p50=${(lag.percentile(50) / 1e6).toFixed(0)} ms p99=${(lag.percentile(99) / 1e6).toFixed(0)} ms rss=${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MB`;
};
const iv = setInterval(() => {
  console.log(stat());
  lag.reset();
}, 10_000);
const edges: [number, number][] = [];
for (let i = 0; i < N; i++) for (let j = i + 1; j < N; j++) edges.push([i, j]);
console.log(`linked in ${((await linkInWaves(meshes, edges)) / 1000).toFixed(0)} s`);
const until = t0 + LIMIT_S * 1000;
let converged = false;
while (performance.now() < until && !converged) {
  converged = meshes.every((m) => m.membership.memberIds().length === N - 1);
  if (!converged) await new Promise((r) => setTimeout(r, 500));
}
clearInterval(iv);
console.log(`${converged ? 'CONVERGED' : 'NOT CONVERGED'} ${stat()}`);
await Promise.all(meshes.map((m) => m.stop().catch(() => {})));
process.exit(converged ? 0 : 1);
