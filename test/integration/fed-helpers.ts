import { saveBackbone } from '../../src/model/backbone.ts';
import { VitConfigSchema, backboneSpecs, exitSpecs, initWeights } from '../../src/model/vit.ts';
import { Federation, type RoundMetrics } from '../../src/round/index.ts';
import type { Mesh } from '../../src/mesh/index.ts';
import { silentLogger } from '../../src/util/log.ts';
import { tempDir } from '../temp-dirs.ts';

/** A tiny ViT on 28x28 inputs (patch 7: 16 patches, dim 16, depth 2) so federation tests train in milliseconds. */
export const TINY_VIT = VitConfigSchema.parse({ patch: 7, dim: 16, depth: 2, heads: 2, mlp: 32 });

let dirPromise: Promise<string> | null = null;
/** A temp models/ folder holding a randomly initialized tiny backbone named `tiny`. */
export function tinyBackboneDir(): Promise<string> {
  dirPromise ??= (async () => {
    const dir = await tempDir('fmfl-tiny-');
    const w = initWeights([...backboneSpecs(TINY_VIT), ...exitSpecs(TINY_VIT)], 5);
    await saveBackbone('tiny', TINY_VIT, w, { training: { note: 'random init for tests' }, testAccuracy: [0, 0] }, dir);
    return dir;
  })();
  return dirPromise;
}

/** Federation settings for tests: tiny model, few steps, short timeouts. */
export async function tinyFl(i: number, n: number, extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  return {
    backbone: 'tiny', backboneDir: await tinyBackboneDir(), rounds: 3, localSteps: 3, batch: 16, shard: `${i}/${n}`,
    alpha: 0.5, rank: 2, loraAlpha: 4, testSlice: 64, prototypeSamples: 64, prototypeEvery: 1, threads: 1,
    roundTimeoutMs: 8000, leaderTimeoutMs: 2000, lr: 3e-3, ...extra,
  };
}

export async function createFeds(meshes: Mesh[], cfg: (i: number) => Promise<Record<string, unknown>>, stateDirs?: (string | undefined)[]): Promise<Federation[]> {
  return Promise.all(meshes.map(async (m, i) => Federation.create(m, await cfg(i), { logger: silentLogger(), stateDir: stateDirs?.[i] })));
}

export async function runAll(feds: Federation[]): Promise<RoundMetrics[][]> {
  return Promise.all(feds.map((f) => f.run()));
}

export async function releaseAll(feds: Federation[]): Promise<void> {
  await Promise.all(feds.map(async (f) => {
    await f.stop().catch(() => {});
    await f.release().catch(() => {});
  }));
}

/** The final global-state hash of each federation. */
export function finalHashes(feds: Federation[]): string[] {
  return feds.map((f) => Buffer.from(f.protocol.snapshot().state.hash).toString('hex'));
}
