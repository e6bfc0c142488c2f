import type { TensorSpec, UpdateManifest, ModelUpdate, TensorMap } from '../../src/update/index.ts';
import { Rng } from '../../src/util/rng.ts';

/** vit-tiny (dim 64, depth 4, 10 classes, LoRA on q and v) trainable tensors: test-only spec table. */
export function vitTinyManifest(rank = 8, dim = 64, depth = 4, classes = 10): UpdateManifest {
  const tensors: TensorSpec[] = [];
  for (let i = 0; i < depth; i++) {
    for (const p of ['q', 'v']) {
      tensors.push({ name: `blocks.${i}.attn.${p}.lora_a`, shape: [dim, rank], loraAxis: 1 });
      tensors.push({ name: `blocks.${i}.attn.${p}.lora_b`, shape: [rank, dim], loraAxis: 0 });
    }
  }
  for (let i = 0; i < depth; i++) {
    tensors.push({ name: `exits.${i}.norm.weight`, shape: [dim] });
    tensors.push({ name: `exits.${i}.norm.bias`, shape: [dim] });
    tensors.push({ name: `exits.${i}.head.weight`, shape: [dim, classes] });
    tensors.push({ name: `exits.${i}.head.bias`, shape: [classes] });
  }
  return { tensors, prototypes: { exits: depth, classes, dim } };
}

/** Gaussian deltas of scale `std` for every manifest tensor at `rank`. */
export function randomDeltas(manifest: UpdateManifest, rng: Rng, rank = 8, std = 0.01): TensorMap {
  const m: TensorMap = new Map();
  for (const s of manifest.tensors) {
    const shape = [...s.shape];
    if (s.loraAxis !== undefined) shape[s.loraAxis] = rank;
    const n = shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
    m.set(s.name, a);
  }
  return m;
}

export function makeUpdate(deltas: TensorMap, extra: Partial<ModelUpdate> = {}): ModelUpdate {
  return {
    federation: 'fed-test', round: 3, baseVersion: 2, sender: '12D3KooWTestPeer', sampleCount: 100, loraRank: 8,
    deltas, prototypes: [], ...extra,
  };
}
