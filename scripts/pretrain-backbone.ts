/**
 * Pretrain a backbone: every weight and every exit, on a data source's train split.
 *   npm run pretrain -- [--epochs 5] [--lr 1e-3] [--seed 1] [--name vit-tiny-mnist] [--out models]
 *   npm run pretrain -- --epochs 20 --name vit-tiny-mnist-strong        (the product's default backbone)
 *   npm run pretrain -- --data ./public-images --model vit-small-64 --name my-backbone
 *   npm run pretrain -- --data mnist --model vit-tiny-32 --name vit-tiny-32-mnist   (MNIST resized to 32x32 RGB)
 * --data: a bundled dataset (mnist, fashion-mnist), a folder of <class>/<image> files or a CSV of path,label rows.
 * --model: a preset (vit-tiny, vit-tiny-32, vit-small-64) or a JSON file holding a custom config; --image-size and
 * --channels override it. --norm data computes the per-channel mean and std from the train split (default for
 * folders and CSV files); --norm half keeps mean 0.5 / std 0.5 (the bundled backbones').
 * Writes <out>/<name>.fmfl and <out>/<name>.json (config, input spec, label set, tensor shapes, SHA-256, per-exit
 * test accuracy); `--backbone <name>` (with `--backbone-dir <out>` outside models/) loads it everywhere.
 * Deterministic for a given seed and thread count.
 */
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { stepBar } from './lib/progress.ts';
import { initWeights } from '../src/model/vit.ts';
import { backboneAndExitTensors } from '../src/model/architecture.ts';
import { resolveModelConfig, MODEL_PRESET_NAMES, type ModelOverrides } from '../src/model/presets.ts';
import { saveBackbone, MODELS_DIR, REFERENCE_BACKBONE } from '../src/model/backbone.ts';
import { DATASET_NAMES, loadData, type InputSpec } from '../src/data/index.ts';
import { runRecipe } from '../src/train/recipes.ts';
import { ConfigError, FmflError } from '../src/util/errors.ts';

const o = new Command()
  .option('--epochs <n>', 'passes over the train split', '5')
  .option('--lr <x>', 'AdamW learning rate', '1e-3')
  .option('--wd <x>', 'AdamW weight decay', '0.01')
  .option('--batch <n>', 'batch size', '64')
  .option('--seed <n>', 'seed of init and minibatch order', '1')
  .option('--name <s>', 'backbone name (the product default vit-tiny-mnist-strong is --epochs 20)', REFERENCE_BACKBONE)
  .option('--out <dir>', 'output folder', MODELS_DIR)
  .option('--data <ref>', `pretraining data: ${DATASET_NAMES.join(' | ')} | <folder> | <file.csv>`, 'mnist')
  .option('--dataset <ref>', 'alias of --data')
  .option('--classes <list>', 'label set, comma-separated (default: the data\'s own)')
  .option('--model <name|file.json>', `architecture: ${MODEL_PRESET_NAMES.join(' | ')} or a JSON file of a custom config`, 'vit-tiny')
  .option('--image-size <n>', 'override the model\'s input size')
  .option('--channels <n>', 'override the model\'s input channels (1 or 3)')
  .option('--norm <how>', 'input normalisation: data (per-channel mean/std of the train split) | half (mean 0.5, std 0.5) | <means>/<stds>, e.g. 0.485,0.456,0.406/0.229,0.224,0.225')
  .option('--test-fraction <x>', 'share of each class held out for testing when the data has no test split', '0.2')
  .parse(process.argv)
  .opts<Record<string, string | undefined>>();

try {
  const dataRef = o.dataset ?? o.data ?? 'mnist';
  let model: string | ModelOverrides = o.model ?? 'vit-tiny';
  if (model.endsWith('.json')) model = JSON.parse(await readFile(model, 'utf8')) as ModelOverrides;
  const overrides: ModelOverrides = {};
  if (o.imageSize) overrides.image = Number(o.imageSize);
  if (o.channels) overrides.channels = Number(o.channels);
  const classes = o.classes?.split(',').map((s) => s.trim()).filter(Boolean);
  const arch = resolveModelConfig(model, overrides);
  const data = await loadData({ ref: dataRef, input: { size: arch.image, channels: arch.channels as 1 | 3 }, classes, testFraction: Number(o.testFraction), seed: 42 });
  if (data.skipped.count > 0) console.error(`skipped ${data.skipped.count} unreadable file(s), e.g. ${data.skipped.examples.map((e) => e.file).join(', ')}`);
  const cfg = resolveModelConfig(model, { ...overrides, classes: data.classes.length });
  const bundled = (DATASET_NAMES as readonly string[]).includes(dataRef);
  const normHow = o.norm ?? (bundled ? 'half' : 'data');
  const given = /^([\d.,]+)\/([\d.,]+)$/.exec(normHow);
  if (normHow !== 'data' && normHow !== 'half' && !given) throw new ConfigError('--norm must be data, half or <means>/<stds> (one per channel, comma-separated)');
  const parse = (v: string): number[] => v.split(',').map(Number);
  const input: InputSpec = normHow === 'half'
    ? { size: cfg.image, channels: cfg.channels as 1 | 3, mean: Array(cfg.channels).fill(0.5), std: Array(cfg.channels).fill(0.5) }
    : given
      ? { size: cfg.image, channels: cfg.channels as 1 | 3, mean: parse(given[1]), std: parse(given[2]) }
      // A constant channel has std 0: floor it so the normalisation stays finite.
      : { size: cfg.image, channels: cfg.channels as 1 | 3, mean: data.stats.mean, std: data.stats.std.map((v) => Math.max(v, 1e-3)) };
  if (input.mean.length !== cfg.channels || input.std.length !== cfg.channels || !input.mean.every(Number.isFinite) || !input.std.every((v) => v > 0)) {
    throw new ConfigError(`--norm: give ${cfg.channels} finite means and ${cfg.channels} stds > 0`);
  }
  console.error(`pretraining ${o.name}: ${cfg.channels}x${cfg.image}x${cfg.image}, patch ${cfg.patch}, dim ${cfg.dim}, depth ${cfg.depth}, ${cfg.heads} heads, MLP ${cfg.mlp}, ${cfg.classes} classes; ${data.train.n} train / ${data.test.n} test images; normalisation mean ${input.mean.join(',')} std ${input.std.join(',')}`);
  const seed = Number(o.seed);
  const bar = stepBar('pretrain', Number(o.epochs));
  const res = await runRecipe({
    cfg,
    weights: initWeights(backboneAndExitTensors(cfg), seed),
    dataset: { train: data.train, test: data.test },
    norm: input,
    trainableSet: 'all',
    lora: null,
    epochs: Number(o.epochs),
    batch: Number(o.batch),
    optimizer: { kind: 'adamw', lr: Number(o.lr), weightDecay: Number(o.wd) },
    seed,
    onStep: bar.step,
    onEpoch: (e, ev, l) => {
      bar.done();
      console.error(`epoch ${e}: train loss ${l.toFixed(4)}, test accuracy per exit ${ev.accuracy.map((a) => (a * 100).toFixed(1)).join(' / ')}`);
    },
  });
  const manifest = await saveBackbone(o.name!, cfg, res.trainer.allWeights(), {
    training: {
      dataset: bundled ? dataRef : 'local data', split: 'train', samples: res.trainSamples, epochs: Number(o.epochs), batch: Number(o.batch), optimizer: 'adamw',
      lr: Number(o.lr), weightDecay: Number(o.wd), seed, trainable: 'all', loss: 'mean of exit cross-entropies',
      model: typeof model === 'string' ? model : 'custom',
    },
    testAccuracy: res.test.accuracy.map((a) => Math.round(a * 10000) / 10000),
    input,
    labels: data.classes,
  }, o.out);
  await res.trainer.release();
  console.log(JSON.stringify({ backbone: manifest.name, sha256: manifest.sha256, params: manifest.params, input: manifest.input, labels: manifest.labels, testAccuracy: manifest.testAccuracy, seconds: Math.round(res.seconds) }));
} catch (err) {
  if (err instanceof FmflError) {
    console.error(`pretrain: ${err.message}`);
    process.exit(2);
  }
  throw err;
}
