/**
 * ONNX import benchmark (not part of `npm test`):
 *   npm run bench:import -- [--json] [--steps 40] [--batch 64] [--threads N] [--onnx <file> --input-size N --exits a,b]
 * For the PyTorch-shaped fixtures of scripts/reference/onnx-fixtures.ts (a ViT with vit-tiny's dimensions and
 * separate q/k/v, and the ResNet-like CNN), and optionally a real exported file: import time, the forward's max
 * |fmfl − onnxruntime| on the original file, and, interleaved (rounds of steps/10 each after warm-up, medians), the
 * LoRA r=8 train step (AdamW included) of the imported ViT against the same architecture built natively
 * (vit-tiny, LoRA on q and v), and of the import without the LayerNorm-Linear rewrite (src/model/onnx/
 * fuse-layernorm-linear.ts undone: `unfusedMs`) and of the import with its last block built for every token
 * (src/model/onnx/cls-only-last-block.ts off: `fullLastMs`). Weights are seeded random; timings only compare within one run.
 */
import { readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { Command } from 'commander';
import { tinyResNetOnnx, tinyVitOnnx } from './reference/onnx-fixtures.ts';
import { forwardAgreement, prepareImport } from '../src/model/onnx/import.ts';
import { importedConfig, registerImportedGraph } from '../src/model/onnx/architecture.ts';
import { unfuseLayerNormLinear } from '../src/model/onnx/fuse-layernorm-linear.ts';
import { exitTensorNames } from '../src/model/architecture.ts';
import { VIT_TINY, backboneSpecs, initWeights, type VitConfig, type Weights } from '../src/model/vit.ts';
import { loadDataset, type Dataset } from '../src/data/index.ts';
import { Trainer } from '../src/train/trainer.ts';

const o = new Command()
  .option('--json', 'print JSON only')
  .option('--steps <n>', 'timed steps per case', '40')
  .option('--batch <n>', 'batch size', '64')
  .option('--threads <n>', 'onnxruntime intra-op threads')
  .option('--onnx <file>', 'also import this exported model (forward agreement and import time only)')
  .option('--input-size <n>', 'input size for --onnx when its spatial dims are symbolic')
  .option('--exits <list>', 'exit tensors for --onnx (default auto)')
  .parse(process.argv)
  .opts<{ json?: boolean; steps: string; batch: string; threads?: string; onnx?: string; inputSize?: string; exits?: string }>();
const steps = Number(o.steps);
const batch = Number(o.batch);
const threads = o.threads ? Number(o.threads) : undefined;
const log = (...a: unknown[]): void => {
  if (!o.json) console.error(...a);
};
const loadStart = loadavg().map((x) => Math.round(x * 100) / 100);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function importCase(name: string, bytes: Uint8Array, opts: Parameters<typeof prepareImport>[1]) {
  const t0 = performance.now();
  const p = prepareImport(bytes, opts);
  const importMs = performance.now() - t0;
  const diff = await forwardAgreement(p.ir, p.weights, bytes, { batch: 4, seed: 7 });
  log(`${name}: import ${importMs.toFixed(0)} ms, max |fmfl - onnxruntime| ${diff.toExponential(2)}, ${p.ir.nodes.length} nodes, ${p.ir.exits.length} exits`);
  return { p, row: { model: name, bytes: bytes.length, nodes: p.ir.nodes.length, foldedNodes: p.foldedNodes, exits: p.ir.exits.length, loraSites: p.ir.lora.length, importMs: Math.round(importMs), forwardMaxAbsDiff: diff } };
}

const vitBytes = tinyVitOnnx({ qkv: 'separate', image: 28, patch: 4, dim: 64, depth: 4, heads: 4, mlp: 128, seed: 3 });
const vit = await importCase('fixture vit (vit-tiny dims, separate qkv)', vitBytes, { loraTargets: 'attn/(q|v)/' });
const cnn = await importCase('fixture resnet-like cnn', tinyResNetOnnx(), { loraTargets: 'fc' });
const rows = [vit.row, cnn.row];
if (o.onnx) {
  const bytes = new Uint8Array(await readFile(o.onnx));
  rows.push((await importCase(o.onnx.split('/').pop()!, bytes, { inputSize: o.inputSize ? Number(o.inputSize) : undefined, exits: o.exits ? o.exits.split(',') : 'auto' })).row);
}

// LoRA step: imported ViT vs native vit-tiny (same dimensions, LoRA r=8 on q and v, fresh heads).
const train: Dataset = await loadDataset('mnist', 'train');
registerImportedGraph(vit.p.ir);
const impCfg: VitConfig = importedConfig(vit.p.ir, 10);
const unfusedIr = { ...vit.p.ir, nodes: unfuseLayerNormLinear(vit.p.ir.nodes) };
registerImportedGraph(unfusedIr);
const unfusedCfg: VitConfig = importedConfig(unfusedIr, 10);
const fullLastIr = { ...vit.p.ir, clsOnly: false };
registerImportedGraph(fullLastIr);
const fullLastCfg: VitConfig = importedConfig(fullLastIr, 10);
const lora = { rank: 8, alpha: 16, targets: ['q', 'v'] as ('q' | 'v')[] };
const heads = (cfg: VitConfig, w: Weights): Weights => new Map([...w].filter(([k]) => !exitTensorNames(cfg).has(k)));
const make = (cfg: VitConfig, w: Weights) => Trainer.create({ cfg, lora, trainableSet: 'lora+heads', weights: heads(cfg, w), batch, seed: 1, threads, optimizer: { kind: 'adamw', lr: 1e-3, weightDecay: 0.01 } });
const cases = [
  { name: 'imported', trainer: await make(impCfg, vit.p.weights) },
  { name: 'native', trainer: await make(VIT_TINY, initWeights(backboneSpecs(VIT_TINY), 3)) },
  { name: 'unfused', trainer: await make(unfusedCfg, vit.p.weights) },
  { name: 'fullLast', trainer: await make(fullLastCfg, vit.p.weights) },
];
const idx = Array.from({ length: 4096 }, (_, i) => i);
for (const c of cases) await c.trainer.trainSteps(train, idx, 5);
const per = Math.max(1, Math.floor(steps / 10));
const ms: Record<string, number[]> = { imported: [], native: [], unfused: [], fullLast: [] };
for (let r = 0; r < 10; r++) {
  for (const c of r % 2 ? [...cases].reverse() : cases) {
    const t0 = performance.now();
    await c.trainer.trainSteps(train, idx, per);
    ms[c.name].push((performance.now() - t0) / per);
  }
}
for (const c of cases) await c.trainer.release();
const step = {
  importedMs: median(ms.imported), nativeMs: median(ms.native), ratio: median(ms.imported) / median(ms.native),
  unfusedMs: median(ms.unfused), unfusedRatio: median(ms.unfused) / median(ms.native),
  fullLastMs: median(ms.fullLast), fullLastRatio: median(ms.fullLast) / median(ms.native), batch, lora: 'r=8 on q,v',
};
log(`LoRA step at batch ${batch}: imported ${step.importedMs.toFixed(1)} ms, native ${step.nativeMs.toFixed(1)} ms (x${step.ratio.toFixed(2)}); without the LayerNorm-Linear rewrite ${step.unfusedMs.toFixed(1)} ms (x${step.unfusedRatio.toFixed(2)}); last block for every token ${step.fullLastMs.toFixed(1)} ms (x${step.fullLastRatio.toFixed(2)})`);
const out = { imports: rows, loraStep: step, loadStart, load: loadavg().map((x) => Math.round(x * 100) / 100) };
console.log(JSON.stringify(out, null, o.json ? 0 : 2));
