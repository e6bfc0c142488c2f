import test from 'ava';
import { Rng } from '../../src/util/rng.ts';
import type { Mesh } from '../../src/mesh/index.ts';
import { createMesh } from '../../src/mesh/index.ts';
import { FAST, startMeshes, stopAll, link, waitFor, viewsConverged, topologies } from './mesh-helpers.ts';

type Edges = Array<[number, number]>;

/** Nodes whose removal keeps the graph connected (so "a node leaves" cannot split the rest). */
function nonCutVertices(n: number, edges: Edges): number[] {
  return Array.from({ length: n }, (_, v) => v).filter((v) => {
    const rest = Array.from({ length: n }, (_, i) => i).filter((i) => i !== v);
    const seen = new Set([rest[0]]);
    const stack = [rest[0]];
    while (stack.length > 0) {
      const x = stack.pop()!;
      for (const [a, b] of edges) {
        const y = a === x ? b : b === x ? a : -1;
        if (y >= 0 && y !== v && !seen.has(y)) {
          seen.add(y);
          stack.push(y);
        }
      }
    }
    return seen.size === rest.length;
  });
}

async function topologyScenario(t: import('ava').ExecutionContext, n: number, edges: Edges, seed: number): Promise<void> {
  const rng = new Rng(seed);
  const meshes: Mesh[] = await startMeshes(n);
  t.teardown(async () => stopAll(meshes));
  const got = meshes.map(() => [] as string[]);
  meshes.forEach((m, i) => m.subscribe('data', (p) => void got[i].push(new TextDecoder().decode(p.subarray(0, 16)))));
  link(meshes, edges);

  await waitFor(() => viewsConverged(meshes), `all ${n} membership views list the ${n - 1} others`);
  for (const m of meshes) t.is(m.membership.memberIds().length, n - 1);

  // A message published anywhere reaches every other node (small: inline gossip; large: stream cutover).
  const src = rng.int(n);
  const small = new TextEncoder().encode(`small-${seed}`.padEnd(1024, '.'));
  await meshes[src].publish('data', small);
  await waitFor(() => got.every((g, i) => i === src || g.some((s) => s.startsWith(`small-${seed}`))), 'the 1 kB message reaches every node');
  const big = new Uint8Array(300 * 1024).fill(66);
  big.set(new TextEncoder().encode(`big-${seed}`), 0);
  const src2 = (src + 1 + rng.int(n - 1)) % n;
  const r = await meshes[src2].publish('data', big);
  t.true(r.viaStream);
  await waitFor(() => got.every((g, i) => i === src2 || g.some((s) => s.startsWith(`big-${seed}`))), 'the 300 kB message reaches every node');
  t.is(got[src].filter((s) => s.startsWith('small-')).length, 0, 'no echo to the publisher');

  // A node that leaves disappears from every remaining view.
  const candidates = nonCutVertices(n, edges);
  const gone = candidates[rng.int(candidates.length)];
  const goneId = meshes[gone].peerId.toString();
  await meshes[gone].stop();
  const rest = meshes.map((_, i) => i).filter((i) => i !== gone);
  await waitFor(() => viewsConverged(meshes, rest), `node ${gone} leaves every view`);
  for (const i of rest) t.false(meshes[i].membership.memberIds().includes(goneId));
}

test.serial('line of 5: views converge, messages reach all, a leaver disappears', async (t) => {
  await topologyScenario(t, 5, topologies.line(5), 1);
});

test.serial('ring of 6: views converge, messages reach all, a leaver disappears', async (t) => {
  await topologyScenario(t, 6, topologies.ring(6), 2);
});

test.serial('star of 6: views converge, messages reach all, a leaver disappears', async (t) => {
  await topologyScenario(t, 6, topologies.star(6), 3);
});

test.serial('full mesh of 5: views converge, messages reach all, a leaver disappears', async (t) => {
  await topologyScenario(t, 5, topologies.full(5), 4);
});

test.serial('random 3-regular graph of 8: views converge, messages reach all, a leaver disappears', async (t) => {
  await topologyScenario(t, 8, topologies.randomRegular(8, 3, 5), 5);
});

test.serial('in-process memory transport with 5 ms latency: a ring of 6 converges and delivers', async (t) => {
  const meshes: Mesh[] = [];
  t.teardown(async () => stopAll(meshes));
  for (let i = 0; i < 6; i++) {
    const m = await createMesh({ federation: 'test', ...FAST, listen: [`/memory/fmfl-test-ring-${i}`], memoryLatencyMs: 5 });
    await m.start();
    meshes.push(m);
  }
  t.true(meshes[0].multiaddrs()[0].startsWith('/memory/fmfl-test-ring-0/p2p/'));
  const got = meshes.map(() => 0);
  meshes.forEach((m, i) => m.subscribe('data', () => void got[i]++));
  link(meshes, topologies.ring(6));
  await waitFor(() => viewsConverged(meshes), 'memory-transport views converge');
  await meshes[2].publish('data', new Uint8Array(200 * 1024));
  await waitFor(() => got.every((g, i) => i === 2 || g === 1), 'the 200 kB message reaches every node');
  t.is(got[2], 0);
});
