import { toUpdateManifest, type UpdateManifest, type ModelUpdate, type TensorMap } from '../../src/update/index.ts';
import { VitConfigSchema, trainableSpecs } from '../../src/model/vit.ts';
import { Rng } from '../../src/util/rng.ts';

/**
 * The update manifest of a vit-tiny-shaped model (LoRA on q and v, plus exit heads), taken from the model's own
 * trainable-tensor specs so tests cannot drift from the real model.
 */
export function vitTinyManifest(rank = 8, dim = 64, depth = 4, classes = 10): UpdateManifest {
  const cfg = VitConfigSchema.parse({ dim, depth, classes });
  return toUpdateManifest(trainableSpecs(cfg, 'lora+heads', { rank, alpha: 2 * rank, targets: ['q', 'v'] }), { prototypes: { exits: depth, classes, dim } });
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
