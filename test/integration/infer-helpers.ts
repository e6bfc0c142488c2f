import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadBackbone } from '../../src/model/backbone.ts';
import { saveModelCheckpoint } from '../../src/model/model-checkpoint.ts';
import { exitSpecs, initWeights, loraSpecs, type LoraConfig, type Weights } from '../../src/model/vit.ts';
import { tempDir } from '../temp-dirs.ts';

/**
 * Write a model checkpoint built from the embedded backbone: its MNIST-trained exit heads, LoRA A random and
 * B small (so LoRA inputs matter), prototypes from a fixed pattern. Returns the file path.
 */
export async function makeTestCheckpoint(version = 'test-v1', seed = 1, labels?: string[]): Promise<string> {
  const bb = await loadBackbone();
  const lora: LoraConfig = { rank: 4, alpha: 8, targets: ['q', 'v'] };
  const w: Weights = initWeights(loraSpecs(bb.cfg, lora), seed);
  for (const s of loraSpecs(bb.cfg, lora)) if (s.name.endsWith('lora_b')) w.get(s.name)!.forEach((_, i, a) => (a[i] = Math.sin(i + seed) * 0.01));
  for (const s of exitSpecs(bb.cfg)) w.set(s.name, Float32Array.from(bb.weights.get(s.name)!));
  const E = bb.cfg.depth, C = bb.cfg.classes, D = bb.cfg.dim;
  const means = Float32Array.from({ length: E * C * D }, (_, i) => Math.cos(i) * 0.5);
  const counts = new Float32Array(E * C).fill(10);
  const dir = await tempDir('fmfl-infer-');
  const path = join(dir, `${version}.fmfl`);
  await saveModelCheckpoint(path, { backbone: bb.manifest.name, cfg: bb.cfg, lora, trainableSet: 'lora+heads', version, round: 0, source: 'centralized', weights: w, prototypes: { means, counts }, ...(labels ? { labels } : {}) });
  return path;
}

/** The 28x28 Fashion-MNIST test image in test/fixtures/infer (a dress), as 784 bytes. */
export async function fixtureImage(): Promise<Uint8Array> {
  return new Uint8Array(await readFile(join(import.meta.dirname, '..', 'fixtures', 'infer', 'fmnist-test-3017.gray')));
}
