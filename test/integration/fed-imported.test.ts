/**
 * A federation on an imported ONNX backbone (the PyTorch-shaped tiny ViT of scripts/reference/onnx-fixtures.ts,
 * imported with LoRA on its fused qkv projections): two real libp2p nodes run rounds of LoRA + heads training and
 * end with the same global state; a node on another import of the same architecture (other weights) has another
 * model digest, so the federation keeps it out.
 */
import test from 'ava';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tinyVitOnnx } from '../../scripts/reference/onnx-fixtures.ts';
import { importOnnxModel } from '../../src/model/onnx/import.ts';
import { startMeshes, stopAll, link, waitFor, viewsConverged } from './mesh-helpers.ts';
import { createFeds, finalHashes, releaseAll, runAll } from './fed-helpers.ts';
import { tempDir } from '../temp-dirs.ts';

test.serial('two nodes federate an imported ONNX ViT with LoRA: same final state on both; another import has another digest', async (t) => {
  const dir = await tempDir('fmfl-onnx-fed-');
  await writeFile(join(dir, 'a.onnx'), tinyVitOnnx({ seed: 1 }));
  await writeFile(join(dir, 'b.onnx'), tinyVitOnnx({ seed: 2 }));
  await importOnnxModel(join(dir, 'a.onnx'), { name: 'vit-a', loraTargets: 'attn/qkv/', dir });
  await importOnnxModel(join(dir, 'b.onnx'), { name: 'vit-b', loraTargets: 'attn/qkv/', dir });
  const meshes = await startMeshes(3);
  t.teardown(() => stopAll(meshes));
  link(meshes, [[0, 1], [1, 2], [0, 2]]);
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const fl = (i: number) => async () => ({
    backbone: i === 2 ? 'vit-b' : 'vit-a', backboneDir: dir, dataset: 'mnist', rounds: 2, localSteps: 3, batch: 16, shard: `${Math.min(i, 1)}/2`,
    alpha: 0.5, rank: 2, loraAlpha: 4, testSlice: 64, prototypeSamples: 32, prototypeEvery: 1, threads: 1,
    roundTimeoutMs: 8000, leaderTimeoutMs: 2000, lr: 3e-3,
  });
  const feds = await createFeds(meshes, (i) => fl(i)());
  t.teardown(() => releaseAll(feds));
  t.is(feds[0].modelDigest, feds[1].modelDigest);
  t.not(feds[0].modelDigest, feds[2].modelDigest, 'another imported graph (other weights) is another model');
  await waitFor(() => meshes[0].membership.memberIds(false).length === 1 && meshes[1].membership.memberIds(false).length === 1, 'the mismatched member leaves the views');
  await feds[2].stop();
  const metrics = await runAll(feds.slice(0, 2));
  t.is(new Set(finalHashes(feds.slice(0, 2))).size, 1, 'identical global state');
  for (const m of metrics) t.deepEqual(m.map((x) => x.version), [1, 2]);
  t.true(metrics[0].every((x) => x.accuracy.length === 3), 'one accuracy per exit of the imported graph');
  const g = feds[0].protocol.snapshot().state;
  t.true(g.tensors.has('blocks.1.attn.qkv.lora_a'), 'LoRA factors of the imported sites are federated');
});
