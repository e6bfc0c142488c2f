import { createMesh, type Mesh, type MeshOptions } from '../../src/mesh/index.ts';
import { Rng } from '../../src/util/rng.ts';

/** Fast timings for tests: 200 ms heartbeats, 2 s expiry (10 missed beats), quick gossipsub heartbeat and redial. */
export const FAST: Partial<MeshOptions> = {
  heartbeatIntervalMs: 200,
  memberExpiryMs: 2000,
  gossipHeartbeatMs: 200,
  redialBaseMs: 100,
  redialMaxMs: 1000,
  dialTimeoutMs: 3000,
};

/** Generous deadline for convergence conditions (never a speed assertion). */
export const DEADLINE_MS = 30_000;

/** Create and start `n` meshes on 127.0.0.1 (random ports). */
export async function startMeshes(n: number, opts: Partial<MeshOptions> = {}): Promise<Mesh[]> {
  const meshes: Mesh[] = [];
  for (let i = 0; i < n; i++) {
    const m = await createMesh({ federation: 'test', ...FAST, ...opts });
    await m.start();
    meshes.push(m);
  }
  return meshes;
}

/** Stop all meshes, ignoring errors (teardown). */
export async function stopAll(meshes: Mesh[]): Promise<void> {
  await Promise.all(meshes.map(async (m) => m.stop().catch(() => {})));
}

/** Make `a` a configured peer of `b` for each edge [a, b]: `b` dials `a` and redials it when the link drops. */
export function link(meshes: Mesh[], edges: Array<[number, number]>): void {
  for (const [a, b] of edges) meshes[b].addPeer(meshes[a].multiaddrs()[0]);
}

/** Poll `cond` every 50 ms until it holds; throws with `what` after `timeoutMs`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = DEADLINE_MS): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Whether every mesh's membership view holds exactly the others in `group` (indices). */
export function viewsConverged(meshes: Mesh[], group: number[] = meshes.map((_, i) => i)): boolean {
  const ids = group.map((i) => meshes[i].peerId.toString());
  return group.every((i) => {
    const want = ids.filter((id) => id !== meshes[i].peerId.toString()).sort().join(',');
    return meshes[i].membership.memberIds().join(',') === want;
  });
}

/** Topologies as undirected edge lists over n nodes. */
export const topologies = {
  line: (n: number): Array<[number, number]> => Array.from({ length: n - 1 }, (_, i) => [i, i + 1] as [number, number]),
  ring: (n: number): Array<[number, number]> => Array.from({ length: n }, (_, i) => [i, (i + 1) % n] as [number, number]),
  star: (n: number): Array<[number, number]> => Array.from({ length: n - 1 }, (_, i) => [0, i + 1] as [number, number]),
  full: (n: number): Array<[number, number]> => {
    const e: Array<[number, number]> = [];
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) e.push([i, j]);
    return e;
  },
  /** A connected random k-regular graph (configuration model with restarts), seeded. */
  randomRegular: (n: number, k: number, seed: number): Array<[number, number]> => {
    if ((n * k) % 2 !== 0 || k >= n) throw new RangeError('need n*k even and k < n');
    const rng = new Rng(seed);
    for (let attempt = 0; attempt < 1000; attempt++) {
      const halfEdges = rng.shuffle(Array.from({ length: n * k }, (_, i) => Math.floor(i / k)));
      const seen = new Set<string>();
      const edges: Array<[number, number]> = [];
      let ok = true;
      for (let i = 0; i < halfEdges.length; i += 2) {
        const a = Math.min(halfEdges[i], halfEdges[i + 1]);
        const b = Math.max(halfEdges[i], halfEdges[i + 1]);
        if (a === b || seen.has(`${a}-${b}`)) {
          ok = false;
          break;
        }
        seen.add(`${a}-${b}`);
        edges.push([a, b]);
      }
      if (ok && connected(n, edges)) return edges;
    }
    throw new Error('no k-regular graph found');
  },
};

function connected(n: number, edges: Array<[number, number]>): boolean {
  const adj = Array.from({ length: n }, () => [] as number[]);
  for (const [a, b] of edges) {
    adj[a].push(b);
    adj[b].push(a);
  }
  const seen = new Set([0]);
  const stack = [0];
  while (stack.length > 0) for (const x of adj[stack.pop()!]) if (!seen.has(x)) (seen.add(x), stack.push(x));
  return seen.size === n;
}
