/**
 * Centralized training recipes used by scripts/pretrain-backbone.ts and scripts/finetune.ts: pretraining a
 * backbone (MNIST by default, or any data source), and fine-tuning it as a linear probe, LoRA + heads or full
 * fine-tuning (Fashion-MNIST by default).
 */
import { loadData, type Dataset, type Normalization } from '../data/index.ts';
import type { LoraConfig, TrainableSet, VitConfig, Weights } from '../model/vit.ts';
import { exitTensorNames } from '../model/architecture.ts';
import type { ExecutionProvider } from '../runtime/index.ts';
import { FmflError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { lrAt, type LrSchedule } from './schedule.ts';
import { Trainer, type EvalResult, type OptimizerConfig } from './trainer.ts';

export interface RecipeOptions {
  cfg: VitConfig;
  /** Starting weights; exit heads are re-initialized when `freshHeads` is set. */
  weights: Weights;
  /** A data source reference (`fashion-mnist`, `mnist`, a folder, a CSV file), or already loaded splits. */
  dataset: string | { train: Dataset; test: Dataset };
  /** Input normalisation (the backbone's; default mean 0.5, std 0.5). */
  norm?: Normalization;
  trainableSet: TrainableSet;
  lora: LoraConfig | null;
  epochs: number;
  batch?: number;
  optimizer?: OptimizerConfig;
  /** Learning-rate schedule over all steps (default constant); `warmupSteps` of linear warm-up for cosine. */
  schedule?: LrSchedule;
  warmupSteps?: number;
  seed: number;
  freshHeads?: boolean;
  /** Train on at most this many samples (a seeded random subset); default all. */
  limit?: number;
  threads?: number;
  provider?: ExecutionProvider;
  /** Called after every step with (step, totalSteps, loss). */
  onStep?: (step: number, total: number, loss: number) => void;
  /** Called after every epoch with its test evaluation. */
  onEpoch?: (epoch: number, ev: EvalResult, meanLoss: number) => void;
  /**
   * Stop early (e.g. Ctrl-C): checked between steps and after each epoch's evaluation. The run then throws
   * {@link RecipeStopped} with the trainer set back to the weights of the last completed epoch.
   */
  signal?: AbortSignal;
}

export interface RecipeResult {
  trainer: Trainer;
  test: EvalResult;
  epochs: { epoch: number; meanLoss: number; test: EvalResult }[];
  trainableParams: number;
  trainSamples: number;
  seconds: number;
}

/**
 * A recipe stopped through its `signal`. `result` is the run up to the last completed epoch (the trainer holds that
 * epoch's weights; the caller releases it), or undefined when no epoch completed (the trainer is released).
 */
export class RecipeStopped extends FmflError {
  constructor(
    readonly result: RecipeResult | undefined,
    readonly reason: string,
  ) {
    super('STOPPED', result ? `stopped (${reason}) after epoch ${result.epochs.length}` : `stopped (${reason}) before the first epoch completed`);
  }
}

/** Train `epochs` passes over the dataset's train split and evaluate every exit on its test split after each. */
export async function runRecipe(o: RecipeOptions): Promise<RecipeResult> {
  const t0 = performance.now();
  const { train, test } = typeof o.dataset === 'string'
    ? await loadData({ ref: o.dataset, input: { size: o.cfg.image, channels: o.cfg.channels as 1 | 3 } })
    : o.dataset;
  let weights = o.weights;
  if (o.freshHeads) {
    const heads = exitTensorNames(o.cfg);
    weights = new Map([...weights].filter(([k]) => !heads.has(k)));
  }
  const trainer = await Trainer.create({
    cfg: o.cfg, lora: o.lora, trainableSet: o.trainableSet, weights, batch: o.batch ?? 64,
    optimizer: o.optimizer, seed: o.seed, threads: o.threads, provider: o.provider, norm: o.norm,
  });
  const indices = subset(train, o.limit, o.seed);
  const perEpoch = Math.floor(indices.length / trainer.batch);
  const total = perEpoch * o.epochs;
  const epochs: RecipeResult['epochs'] = [];
  let step = 0;
  const schedule = o.schedule ?? 'constant';
  const base = trainer.optimizer.lr;
  trainer.optimizer.lr = lrAt(schedule, base, 0, total, o.warmupSteps ?? 0);
  const result = (): RecipeResult => ({
    trainer,
    test: epochs[epochs.length - 1].test,
    epochs,
    trainableParams: [...trainer.params.values()].reduce((a, p) => a + p.length, 0),
    trainSamples: indices.length,
    seconds: (performance.now() - t0) / 1000,
  });
  let lastEpoch: Weights | undefined;
  const stop = async (): Promise<never> => {
    const why = String(o.signal?.reason ?? 'aborted');
    if (lastEpoch === undefined) {
      await trainer.release();
      throw new RecipeStopped(undefined, why);
    }
    trainer.loadParams(lastEpoch);
    throw new RecipeStopped(result(), why);
  };
  for (let e = 0; e < o.epochs; e++) {
    if (o.signal?.aborted) await stop();
    const meanLoss = await trainer.trainSteps(train, indices, perEpoch, (_i, loss) => {
      o.onStep?.(++step, total, loss);
      if (step < total) trainer.optimizer.lr = lrAt(schedule, base, step, total, o.warmupSteps ?? 0);
    }, o.signal);
    if (o.signal?.aborted) await stop();
    const ev = await trainer.evaluate(test);
    epochs.push({ epoch: e + 1, meanLoss, test: ev });
    if (o.signal !== undefined) lastEpoch = trainer.snapshot();
    o.onEpoch?.(e + 1, ev, meanLoss);
  }
  return result();
}

function subset(ds: Dataset, limit: number | undefined, seed: number): Uint32Array {
  const all = Uint32Array.from({ length: ds.n }, (_, i) => i);
  if (limit === undefined || limit >= ds.n) return all;
  new Rng(seed ^ 0x11).shuffle(all);
  return all.slice(0, limit);
}
