/**
 * `fmfl-node import-model <file.onnx>`: bring your own foundation model. Imports an exported ONNX graph as a
 * backbone (src/model/onnx) that `--backbone <name>` then selects in finetune, federation and inference.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ConfigError } from '../util/errors.ts';
import { MODELS_DIR } from '../model/backbone.ts';
import { importOnnxModel, listOnnx } from '../model/onnx/import.ts';

interface ImportFlags {
  name?: string;
  loraTargets?: string;
  exits?: string;
  keepHead?: boolean;
  labels?: string;
  classes?: string;
  mean?: string;
  std?: string;
  inputSize?: string;
  seed?: string;
  modelsDir?: string;
  list?: boolean;
  json?: boolean;
}

const numbers = (flag: string, v: string | undefined): number[] | undefined => {
  if (v === undefined) return undefined;
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x))) throw new ConfigError(`${flag} must be comma-separated numbers, got "${v}"`);
  return xs;
};

const positive = (flag: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new ConfigError(`${flag} must be a positive whole number, got "${v}"`);
  return Number(v);
};

/** Register `import-model` on the program; `setCode` receives the exit code. */
export function registerImportModelCommand(program: Command, io: { stdout: (s: string) => void }, setCode: (c: number) => void): void {
  program
    .command('import-model')
    .description('import an exported ONNX model (ViT, ResNet, ...) as a backbone: LoRA sites, exit heads, frozen weights')
    .argument('<file>', 'the .onnx file (torch.onnx.export at opset 13..21, weights inside the file)')
    .option('--name <name>', 'backbone name: writes <models-dir>/<name>.fmfl and <name>.json')
    .option('--lora-targets <regex>', "MatMul/Gemm nodes that get LoRA, matched against node and weight names (e.g. 'attn/(q|v)/' or 'attn/qkv'); none: heads or all only")
    .option('--exits <auto|tensor,...>', "exit heads: 'auto' (each repeated block's output) or tensor names from --list", 'auto')
    .option('--keep-head', "keep the model's own classifier (the Linear computing its output) as the last exit; its class count must match --labels/--classes")
    .option('--labels <name,...>', 'class names of the exit heads (default 0..9; a federation resizes heads to its label set)')
    .option('--classes <n>', 'number of classes when no --labels are given (names 0..n-1)')
    .option('--mean <m,...>', 'per-channel input mean the model was trained with, in [0,1] units (default 0.5)')
    .option('--std <s,...>', 'per-channel input std (default 0.5)')
    .option('--input-size <n>', 'fix symbolic height/width of the input to n pixels')
    .option('--seed <n>', 'seed of the fresh exit heads and of the check batch', '1')
    .option('--models-dir <dir>', `where to write the backbone (default ${MODELS_DIR})`)
    .option('--list', 'print the LoRA candidates, repeated blocks and exit candidates, and write nothing')
    .option('--json', 'print the report as JSON')
    .addHelpText('after', `
Examples:
  fmfl-node import-model vit.onnx --list
  fmfl-node import-model vit.onnx --name hospital-vit --lora-targets 'attn/qkv/' --exits auto
  npm run finetune -- --backbone hospital-vit --set lora+heads`)
    .action(async (file: string, f: ImportFlags) => {
      const inputSize = positive('--input-size', f.inputSize);
      if (f.list) {
        const l = listOnnx(new Uint8Array(await readFile(file)), { inputSize });
        if (f.json) io.stdout(`${JSON.stringify(l, null, 2)}\n`);
        else {
          io.stdout(`LoRA candidates (MatMul/Gemm with a constant weight; --lora-targets matches node or weight name):\n`);
          for (const c of l.lora) io.stdout(`  ${c.node}  weight ${c.weight}  [${c.in} -> ${c.out}]\n`);
          io.stdout(`Repeated blocks (--exits auto takes the first family's outputs):\n`);
          for (const fam of l.families) {
            io.stdout(`  ${fam.pattern} x${fam.outputs.length}\n`);
            for (const o of fam.outputs) io.stdout(`    ${o.tensor}  [batch,${o.shape.slice(1).join(',')}]\n`);
          }
          if (l.families.length === 0) io.stdout('  none found: name exit tensors with --exits\n');
        }
        setCode(0);
        return;
      }
      if (!f.name) throw new ConfigError('import-model needs --name <backbone name> (or --list)');
      const classes = positive('--classes', f.classes);
      const labels = f.labels ? f.labels.split(',').map((s) => s.trim()).filter(Boolean) : classes ? Array.from({ length: classes }, (_, i) => String(i)) : undefined;
      if (labels && (labels.length < 2 || new Set(labels).size !== labels.length)) throw new ConfigError('--labels must name at least 2 distinct classes');
      const t0 = performance.now();
      const rep = await importOnnxModel(file, {
        name: f.name, loraTargets: f.loraTargets, exits: !f.exits || f.exits === 'auto' ? 'auto' : f.exits.split(',').map((s) => s.trim()),
        keepHead: f.keepHead, labels, mean: numbers('--mean', f.mean), std: numbers('--std', f.std), inputSize, seed: positive('--seed', f.seed), dir: f.modelsDir,
      });
      const seconds = (performance.now() - t0) / 1000;
      if (f.json) {
        const { manifest, ...rest } = rep;
        io.stdout(`${JSON.stringify({ ...rest, seconds, checkpoint: manifest.checkpoint, sha256: manifest.sha256 }, null, 2)}\n`);
      } else {
        io.stdout(`imported ${file} as backbone ${rep.name} (${rep.arch}) in ${seconds.toFixed(2)} s\n`);
        io.stdout(`  ${rep.onnxNodes} ONNX nodes (${rep.foldedNodes} shape-plumbing nodes folded), ${rep.weights} frozen tensors, ${rep.params} parameters\n`);
        io.stdout(`  forward vs onnxruntime on the original file: max |diff| ${rep.forwardMaxAbsDiff.toExponential(2)}\n`);
        io.stdout(`  LoRA on ${rep.lora.length} nodes${rep.lora.length ? `: ${rep.lora.map((s) => s.node).join(', ')}` : ''}\n`);
        io.stdout(`  ${rep.exits.length} exits (width ${rep.dim}): ${rep.exits.map((e) => e.tensor).join(', ')}${rep.exits.at(-1)?.kept ? ` (the last with the model's own classifier, ${rep.exits.at(-1)!.kept!.classes} classes)` : ''}\n`);
        io.stdout(`  wrote ${rep.manifest.checkpoint} (sha256 ${rep.manifest.sha256.slice(0, 16)}...)\n`);
        io.stdout(`next: npm run finetune -- --backbone ${rep.name} --set ${rep.lora.length ? 'lora+heads' : 'heads'}${f.modelsDir ? ` --backbone-dir ${f.modelsDir}` : ''}\n`);
      }
      setCode(0);
    });
}
