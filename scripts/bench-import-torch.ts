/**
 * Imported model vs PyTorch, LoRA train step (not part of `npm test`; needs Debian's python3-torch):
 *   npm run bench:import-torch -- [--json] [--rounds 10] [--per 3] [--threads 2] [--batch 64]
 *     [--onnx file --model <export_models.py name> --lora-targets re --exits a,b --keep-head]
 * Default: the committed ResNet export (test/fixtures/onnx/resnet.onnx) with its reference's settings (LoRA on
 * `fc`, exits layer3.1 / layer4.0 / layer4.1, `--keep-head`), LoRA r=8 alpha 16, lora+heads, AdamW, batch 64.
 * fmfl's step (onnxruntime, `--threads` intra-op threads) and PyTorch's (scripts/reference/export_models.py
 * `--serve`: the same architecture, LoRA and heads, `torch.set_num_threads(--threads)`, OMP_NUM_THREADS set to the
 * same, one warm process) are timed interleaved: after 5 warm-up steps each, `--rounds` rounds of `--per` steps of
 * each, the order alternating per round, so that load from other jobs hits both alike. Prints medians of the per-step
 * times, the samples/s ratio fmfl / PyTorch, the per-round ratios and the load average before and after.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { Command } from 'commander';
import { prepareImport } from '../src/model/onnx/import.ts';
import { importedConfig, registerImportedGraph } from '../src/model/onnx/architecture.ts';
import { exitTensorNames } from '../src/model/architecture.ts';
import type { Weights } from '../src/model/vit.ts';
import { loadDataset, type Dataset } from '../src/data/index.ts';
import { Trainer } from '../src/train/trainer.ts';

const RESNET_EXITS = ['/layer3/layer3.1/relu_1/Relu_output_0', '/layer4/layer4.0/relu_1/Relu_output_0', '/layer4/layer4.1/relu_1/Relu_output_0'];
const o = new Command()
  .option('--json', 'print JSON only')
  .option('--rounds <n>', 'interleaved rounds', '10')
  .option('--per <n>', 'steps of each side per round', '3')
  .option('--threads <n>', 'threads of both sides (onnxruntime intra-op; torch.set_num_threads and OMP_NUM_THREADS)', '2')
  .option('--batch <n>', 'batch size', '64')
  .option('--onnx <file>', 'exported model (default: the committed ResNet fixture)', 'test/fixtures/onnx/resnet.onnx')
  .option('--model <name>', "its architecture in scripts/reference/export_models.py (PyTorch's side)", 'resnet')
  .option('--lora-targets <re>', 'LoRA sites', '^/fc/')
  .option('--exits <list>', 'exit tensors (or auto)', RESNET_EXITS.join(','))
  .option('--keep-head', 'the model classifier is the last exit', true)
  .option('--no-keep-head', 'fresh heads on every exit')
  .option('--python <bin>', 'Python with torch', '/usr/bin/python3')
  .parse(process.argv)
  .opts<{ json?: boolean; rounds: string; per: string; threads: string; batch: string; onnx: string; model: string; loraTargets: string; exits: string; keepHead: boolean; python: string }>();
const [rounds, per, threads, batch] = [o.rounds, o.per, o.threads, o.batch].map(Number);
const log = (...a: unknown[]): void => {
  if (!o.json) console.error(...a);
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round2 = (x: number): number => Math.round(x * 100) / 100;
const loadStart = loadavg().map(round2);

// fmfl: the import, LoRA r=8 (alpha 16) on the chosen sites, lora+heads, AdamW, as bench:train trains a backbone.
const bytes = new Uint8Array(await readFile(o.onnx));
const { ir, weights } = prepareImport(bytes, { loraTargets: o.loraTargets, exits: o.exits === 'auto' ? 'auto' : o.exits.split(','), keepHead: o.keepHead });
registerImportedGraph(ir);
const cfg = importedConfig(ir, 10);
const frozen: Weights = new Map([...weights].filter(([k]) => !exitTensorNames(cfg).has(k)));
const trainer = await Trainer.create({ cfg, lora: { rank: 8, alpha: 16, targets: ['q', 'v'] }, trainableSet: 'lora+heads', weights: frozen, batch, seed: 1, threads, optimizer: { kind: 'adamw', lr: 1e-3, weightDecay: 0.01 } });
const fm = await loadDataset('fashion-mnist', 'train');
const pixels = cfg.channels * cfg.image * cfg.image;
// Seeded pixels of the model's own shape (timing only), as bench:train does for another input spec.
const ds: Dataset = fm.channels === cfg.channels && fm.height === cfg.image ? fm : { ...fm, channels: cfg.channels, height: cfg.image, width: cfg.image, images: Uint8Array.from({ length: fm.n * pixels }, (_, i) => (i * 2654435761) >>> 24) };
const idx = Uint32Array.from({ length: batch }, (_, i) => (i * 937) % ds.n);
const fmflSteps = async (n: number): Promise<number[]> => {
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await trainer.step(ds, idx);
    ts.push(performance.now() - t0);
  }
  return ts;
};

// PyTorch: one warm process, N steps per request.
const py = spawn(o.python, ['scripts/reference/export_models.py', '--serve', '--models', o.model, '--rank', '8', '--alpha', '16', '--threads', String(threads), '--batch', String(batch)], {
  env: { ...process.env, OMP_NUM_THREADS: String(threads) },
  stdio: ['pipe', 'pipe', 'inherit'],
});
const lines = createInterface({ input: py.stdout })[Symbol.asyncIterator]();
const nextLine = async (): Promise<Record<string, unknown>> => {
  const r = await lines.next();
  if (r.done) throw new Error(`${o.python} export_models.py --serve ended (is python3-torch installed?)`);
  return JSON.parse(r.value) as Record<string, unknown>;
};
const torchInfo = await nextLine();
const torchSteps = async (n: number): Promise<number[]> => {
  py.stdin.write(`${n}\n`);
  return (await nextLine()).ms as number[];
};

await fmflSteps(5);
const ms = { fmfl: [] as number[], torch: [] as number[] };
const perRound: number[] = [];
for (let r = 0; r < rounds; r++) {
  const sides = r % 2 ? (['torch', 'fmfl'] as const) : (['fmfl', 'torch'] as const);
  const got: Record<string, number[]> = {};
  for (const s of sides) got[s] = await (s === 'fmfl' ? fmflSteps(per) : torchSteps(per));
  ms.fmfl.push(...got.fmfl);
  ms.torch.push(...got.torch);
  perRound.push(round2(median(got.torch) / median(got.fmfl)));
  log(`round ${r}: fmfl ${median(got.fmfl).toFixed(1)} ms, torch ${median(got.torch).toFixed(1)} ms`);
}
py.stdin.end('0\n');
await trainer.release();
const [f, t] = [median(ms.fmfl), median(ms.torch)];
const out = {
  model: o.model, onnx: o.onnx.split('/').pop(), batch, threads, lora: 'r=8 alpha 16', loraSites: ir.lora.length, exits: ir.exits.length, keepHead: o.keepHead,
  fmflMs: round2(f), torchMs: round2(t), fmflOverTorchSamplesPerSec: round2(t / f), perRound,
  spread: { fmfl: [round2(Math.min(...ms.fmfl)), round2(Math.max(...ms.fmfl))], torch: [round2(Math.min(...ms.torch)), round2(Math.max(...ms.torch))] },
  torch: torchInfo, loadStart, load: loadavg().map(round2),
};
console.log(JSON.stringify(out, null, o.json ? 0 : 2));
