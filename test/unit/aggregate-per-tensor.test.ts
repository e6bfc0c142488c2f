import test from 'ava';
import { AggregateError, AggregateRefusal, aggregateRound, getAggregator, type AggregateInput } from '../../src/aggregate/index.ts';
import type { ModelUpdate, UpdateManifest } from '../../src/update/index.ts';

// Two blocks with one LoRA pair each ([2, r] x [r, 2]) and two exit heads: a depth-1 node carries blocks.0 and
// exits.0 only.
const manifest: UpdateManifest = {
  tensors: [
    { name: 'blocks.0.q.lora_a', shape: [2, 2], loraAxis: 1 },
    { name: 'blocks.0.q.lora_b', shape: [2, 2], loraAxis: 0 },
    { name: 'blocks.1.q.lora_a', shape: [2, 2], loraAxis: 1 },
    { name: 'blocks.1.q.lora_b', shape: [2, 2], loraAxis: 0 },
    { name: 'exits.0.head', shape: [2] },
    { name: 'exits.1.head', shape: [2] },
  ],
};
const t32 = (x: number[]): Float32Array => Float32Array.from(x);
const upd = (sampleCount: number, loraRank: number, d: Record<string, number[]>): AggregateInput => ({
  sampleCount, loraRank, deltas: new Map(Object.entries(d).map(([k, v]) => [k, t32(v)])),
});
const close = (t: import('ava').ExecutionContext, a: Float32Array | undefined, b: number[], tol = 1e-6): void => {
  t.truthy(a);
  t.is(a!.length, b.length);
  a!.forEach((v, i) => t.true(Math.abs(v - b[i]) <= tol, `index ${i}: ${v} vs ${b[i]}`));
};

// Node A: full depth, 1 sample. Node B: full depth, 3 samples. Node C: depth 1, 4 samples (carries block 0 and exit 0).
const A = upd(1, 2, { 'blocks.0.q.lora_a': [1, 1, 1, 1], 'blocks.0.q.lora_b': [1, 1, 1, 1], 'blocks.1.q.lora_a': [2, 2, 2, 2], 'blocks.1.q.lora_b': [4, 4, 4, 4], 'exits.0.head': [1, 0], 'exits.1.head': [8, 0] });
const B = upd(3, 2, { 'blocks.0.q.lora_a': [5, 5, 5, 5], 'blocks.0.q.lora_b': [1, 1, 1, 1], 'blocks.1.q.lora_a': [6, 6, 6, 6], 'blocks.1.q.lora_b': [0, 0, 0, 0], 'exits.0.head': [1, 4], 'exits.1.head': [0, 4] });
const C = upd(4, 2, { 'blocks.0.q.lora_a': [9, 9, 9, 9], 'blocks.0.q.lora_b': [3, 3, 3, 3], 'exits.0.head': [3, 0] });

test('fedavg per tensor: each tensor is the sample-weighted mean over the updates that carry it (hand-computed)', (t) => {
  const r = getAggregator('fedavg')([A, B, C]);
  // Shared tensors: weights 1/8, 3/8, 4/8. blocks.0 lora_a = (1 + 15 + 36) / 8 = 6.5; exits.0 = ((1+3+12)/8, 12/8) = (2, 1.5).
  close(t, r.deltas.get('blocks.0.q.lora_a'), [6.5, 6.5, 6.5, 6.5]);
  close(t, r.deltas.get('blocks.0.q.lora_b'), [2, 2, 2, 2]);
  close(t, r.deltas.get('exits.0.head'), [2, 1.5]);
  // Deep tensors: only A and B carry them, weights renormalized to 1/4, 3/4: lora_a = (2 + 18) / 4 = 5, exit 1 = (2, 3).
  close(t, r.deltas.get('blocks.1.q.lora_a'), [5, 5, 5, 5]);
  close(t, r.deltas.get('blocks.1.q.lora_b'), [1, 1, 1, 1]);
  close(t, r.deltas.get('exits.1.head'), [2, 3]);
  t.is(r.sampleCount, 8);
});

test('tensors nobody sent are absent from the aggregate, so the global keeps them unchanged', (t) => {
  const r = getAggregator('fedavg')([C, upd(2, 2, { 'blocks.0.q.lora_a': [1, 1, 1, 1], 'blocks.0.q.lora_b': [1, 1, 1, 1], 'exits.0.head': [0, 0] })]);
  t.deepEqual([...r.deltas.keys()].sort(), ['blocks.0.q.lora_a', 'blocks.0.q.lora_b', 'exits.0.head']);
  close(t, r.deltas.get('blocks.0.q.lora_a'), [19 / 3, 19 / 3, 19 / 3, 19 / 3], 1e-5);
});

test('fedavgm runs per tensor through its inner fedavg', (t) => {
  const r = getAggregator('fedavgm')([A, B, C], { serverMomentum: 0, serverLr: 1 });
  close(t, r.deltas.get('blocks.1.q.lora_a'), [5, 5, 5, 5]);
  close(t, r.deltas.get('exits.0.head'), [2, 1.5]);
});

test('hetlora per tensor with mixed depths and ranks (hand-computed)', (t) => {
  // A at rank 2 (full depth, 1 sample), D at rank 1 (depth 1, 1 sample): block 0 is shared, block 1 is A's alone.
  const D = upd(1, 1, { 'blocks.0.q.lora_a': [3, 3], 'blocks.0.q.lora_b': [3, 3], 'exits.0.head': [3, 2] });
  const z = getAggregator('hetlora-zero')([A, D], { manifest, targetRank: 2 });
  // lora_a [2, r]: D padded to [[3, 0], [3, 0]]; mean with A's ones: [2, 0.5, 2, 0.5].
  close(t, z.deltas.get('blocks.0.q.lora_a'), [2, 0.5, 2, 0.5]);
  // lora_b [r, 2]: D padded to [[3, 3], [0, 0]]: [2, 2, 0.5, 0.5].
  close(t, z.deltas.get('blocks.0.q.lora_b'), [2, 2, 0.5, 0.5]);
  close(t, z.deltas.get('blocks.1.q.lora_a'), [2, 2, 2, 2]);
  close(t, z.deltas.get('exits.0.head'), [2, 1]);
  close(t, z.deltas.get('exits.1.head'), [8, 0]);
  const p = getAggregator('hetlora-replicate')([A, D], { manifest, targetRank: 2 });
  // Rank slice 1 of block 0 is held by A only: replicated from A.
  close(t, p.deltas.get('blocks.0.q.lora_a'), [2, 1, 2, 1]);
  close(t, p.deltas.get('blocks.1.q.lora_b'), [4, 4, 4, 4]);
  const f = getAggregator('flexlora')([A, D], { manifest, targetRank: 2 });
  t.deepEqual([...f.deltas.keys()].sort(), manifest.tensors.map((s) => s.name).sort());
  t.is(f.loraRank, 2);
});

test('a tensor whose holders disagree on its length is refused with a typed error', (t) => {
  const bad = upd(1, 2, { 'exits.1.head': [1, 2, 3] });
  const e = t.throws(() => getAggregator('fedavg')([A, bad]), { instanceOf: AggregateError });
  t.is(e.reason, AggregateRefusal.SHAPE_MISMATCH);
  const empty = upd(1, 2, {});
  t.is(t.throws(() => getAggregator('fedavg')([A, empty]), { instanceOf: AggregateError }).reason, AggregateRefusal.SHAPE_MISMATCH);
});

test('aggregateRound (what the leader and every verifying member run) is per tensor and order-independent', (t) => {
  const mk = (sender: string, a: AggregateInput): ModelUpdate => ({
    federation: 'f', round: 1, baseVersion: 0, sender, sampleCount: a.sampleCount, loraRank: a.loraRank ?? 2, deltas: a.deltas, prototypes: [],
  });
  const ups = [mk('c', C), mk('a', A), mk('b', B)];
  const r1 = aggregateRound({ rule: 'fedavg', updates: ups });
  const r2 = aggregateRound({ rule: 'fedavg', updates: [...ups].reverse() });
  close(t, r1.deltas.get('blocks.1.q.lora_a'), [5, 5, 5, 5]);
  for (const [k, v] of r1.deltas) t.deepEqual(Array.from(v), Array.from(r2.deltas.get(k)!), k);
});

test('a round where no update carries some tensors (every node shallow) leaves them out, for every per-tensor rule', (t) => {
  const D = upd(1, 1, { 'blocks.0.q.lora_a': [3, 3], 'blocks.0.q.lora_b': [3, 3], 'exits.0.head': [3, 2] });
  for (const rule of ['fedavg', 'fedavgm', 'hetlora-zero', 'hetlora-replicate', 'flexlora']) {
    const r = getAggregator(rule)(rule.startsWith('fedavg') ? [C, C] : [C, D], { manifest, targetRank: 2 });
    t.false([...r.deltas.keys()].some((k) => k.startsWith('blocks.1.') || k === 'exits.1.head'), rule);
    t.true(r.deltas.has('exits.0.head'), rule);
  }
});

test("weighting 'depth': a shared block weighs each update by samples x the exit losses it was trained through (hand-computed)", (t) => {
  // A, B have depth 2 (exits 0, 1): block 0 through 2 losses, block 1 through 1; C has depth 1: block 0 through 1.
  const r = getAggregator('fedavg')([A, B, C], { weighting: 'depth' });
  // blocks.0: weights 1·2, 3·2, 4·1 = 2, 6, 4 over 12: lora_a = (2 + 30 + 36) / 12 = 68/12; lora_b = (2 + 6 + 12) / 12.
  close(t, r.deltas.get('blocks.0.q.lora_a'), new Array(4).fill(68 / 12), 1e-5);
  close(t, r.deltas.get('blocks.0.q.lora_b'), new Array(4).fill(20 / 12), 1e-5);
  // Exit heads are trained through their own loss only: plain sample weights (1/8, 3/8, 4/8).
  close(t, r.deltas.get('exits.0.head'), [2, 1.5]);
  // Deep tensors: only A and B, both depth 2: the sample weights 1/4, 3/4.
  close(t, r.deltas.get('blocks.1.q.lora_a'), [5, 5, 5, 5]);
  // One depth across the updates: the same as sample weighting, for the rank-heterogeneous rules too.
  for (const rule of ['fedavg', 'hetlora-zero', 'hetlora-replicate'] as const) {
    const a = getAggregator(rule)([A, B], { manifest, targetRank: 2, weighting: 'depth' });
    const b = getAggregator(rule)([A, B], { manifest, targetRank: 2 });
    for (const [k, v] of b.deltas) close(t, a.deltas.get(k), [...v], 1e-6);
  }
  const z = getAggregator('hetlora-zero')([A, B, C], { manifest, targetRank: 2, weighting: 'depth' });
  close(t, z.deltas.get('blocks.0.q.lora_a'), new Array(4).fill(68 / 12), 1e-5);
});
