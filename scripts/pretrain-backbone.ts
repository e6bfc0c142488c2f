/**
 * Pretrain the embedded foundation model: vit-tiny, all weights and all exits, on the MNIST train split.
 *   npm run pretrain -- [--epochs 5] [--lr 1e-3] [--seed 1] [--name vit-tiny-mnist] [--out models]
 *   npm run pretrain -- --epochs 20 --name vit-tiny-mnist-strong        (the product's default backbone)
 * Writes models/<name>.fmfl and models/<name>.json (config, tensor shapes, SHA-256, per-exit test accuracy).
 * Deterministic for a given seed and thread count.
 */
import { Command } from 'commander';
import { stepBar } from './lib/progress.ts';
import { VIT_TINY, backboneSpecs, exitSpecs, initWeights } from '../src/model/vit.ts';
import { saveBackbone, MODELS_DIR, REFERENCE_BACKBONE } from '../src/model/backbone.ts';
import { runRecipe } from '../src/train/recipes.ts';

const o = new Command()
  .option('--epochs <n>', 'passes over MNIST train', '5')
  .option('--lr <x>', 'AdamW learning rate', '1e-3')
  .option('--wd <x>', 'AdamW weight decay', '0.01')
  .option('--batch <n>', 'batch size', '64')
  .option('--seed <n>', 'seed of init and minibatch order', '1')
  .option('--name <s>', 'backbone name (the product default vit-tiny-mnist-strong is --epochs 20)', REFERENCE_BACKBONE)
  .option('--out <dir>', 'output folder', MODELS_DIR)
  .option('--dataset <name>', 'pretraining dataset (mnist | fashion-mnist)', 'mnist')
  .parse(process.argv)
  .opts<{ epochs: string; lr: string; wd: string; batch: string; seed: string; name: string; out: string; dataset: 'mnist' | 'fashion-mnist' }>();

const cfg = VIT_TINY;
const seed = Number(o.seed);
const bar = stepBar('pretrain');
const res = await runRecipe({
  cfg,
  weights: initWeights([...backboneSpecs(cfg), ...exitSpecs(cfg)], seed),
  dataset: o.dataset,
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
const manifest = await saveBackbone(o.name, cfg, res.trainer.allWeights(), {
  training: { dataset: o.dataset, split: 'train', samples: res.trainSamples, epochs: Number(o.epochs), batch: Number(o.batch), optimizer: 'adamw', lr: Number(o.lr), weightDecay: Number(o.wd), seed, trainable: 'all', loss: 'mean of exit cross-entropies' },
  testAccuracy: res.test.accuracy.map((a) => Math.round(a * 10000) / 10000),
}, o.out);
await res.trainer.release();
console.log(JSON.stringify({ backbone: manifest.name, sha256: manifest.sha256, params: manifest.params, testAccuracy: manifest.testAccuracy, seconds: Math.round(res.seconds) }));
