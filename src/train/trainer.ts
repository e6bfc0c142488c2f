/**
 * Local training and evaluation of the ViT through onnxruntime: one training session (forward + loss +
 * gradients) and one inference session, both fed the current trainable tensors, and an optimizer over
 * Float32Arrays in between.
 */
import { buildInferGraph, buildTrainGraph, embeddingName, gradName, logitsName, IMAGES, LABELS, LOGIT_BIAS, PROTOTYPES, PROTO_MASK } from '../model/graphs.ts';
import { initWeights, type LoraConfig, type ParamSpec, type TrainableSet, type VitConfig, type Weights } from '../model/vit.ts';
import { modelTensors, tensorsUpToDepth, trainableTensors } from '../model/architecture.ts';
import { Session, type ExecutionProvider, type FeedValue } from '../runtime/index.ts';
import { toFloatBatch, type Dataset, type Normalization } from '../data/index.ts';
import { AdamW, SGD, type Optimizer, type OptimizerState } from './optim.ts';
import { ConfigError, FmflError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import type { Logger } from '../util/log.ts';

export type OptimizerConfig =
  | { kind: 'adamw'; lr: number; weightDecay?: number; betas?: [number, number] }
  | { kind: 'sgd'; lr: number; momentum?: number; weightDecay?: number; nesterov?: boolean };

export interface TrainerOptions {
  cfg: VitConfig;
  /** LoRA config; required for 'lora+heads', ignored for 'all'. */
  lora: LoraConfig | null;
  trainableSet: TrainableSet;
  /** Weights of the pretrained model. Trainable tensors missing from it are initialized from `seed`. */
  weights: Weights;
  /** Train batch size (default 64). */
  batch?: number;
  /** Evaluation batch size (default 250). */
  evalBatch?: number;
  optimizer?: OptimizerConfig;
  /** Seeds initialization of missing trainable tensors and the minibatch order. */
  seed?: number;
  /** Weight of the prototype term in the loss (0: off). */
  protoWeight?: number;
  /** Mutual self-distillation between the trained exits (DepthFL): weight of the term (0: off; see TrainGraphSpec.distillWeight). */
  distillWeight?: number;
  /** Temperature of the distillation term (default 1). */
  distillTemperature?: number;
  /** Logit adjustment: the training loss adds a per-class bias (setLogitBias; zeros until set) to every exit's logits. */
  logitAdjust?: boolean;
  provider?: ExecutionProvider;
  threads?: number;
  fusedGelu?: boolean;
  /**
   * Depth budget (DepthFL / InclusiveFL): train and serve only blocks 1..maxDepth and their exits; the training and
   * evaluation graphs are cut after that block. Default: the model's depth.
   */
  maxDepth?: number;
  /** Clip gradients to this global L2 norm (off by default). */
  clipNorm?: number;
  /** Per-channel input normalisation (the backbone's input spec; default mean 0.5, std 0.5). */
  norm?: Normalization;
  /**
   * Share the onnxruntime sessions with every other trainer of this process whose graphs are byte-identical
   * (same architecture, LoRA, trainable set, frozen weights, batch sizes, thread count): trainable tensors are
   * graph inputs, so one session serves every trainer's steps, and its memory arena is paid once (default true).
   */
  shareSessions?: boolean;
  logger?: Logger;
}

/** Per-exit evaluation results. */
export interface EvalResult {
  n: number;
  /** Accuracy per exit (0..1). */
  accuracy: number[];
  /** Mean cross-entropy per exit. */
  loss: number[];
  /** Accuracy of the mean of all exits' softmax probabilities. */
  ensembleAccuracy: number;
}

/** Per exit, per class: sum of exit embeddings and sample count (the local prototype statistics). */
export interface PrototypeStats {
  exits: number;
  classes: number;
  dim: number;
  /** [exits * classes * dim] sums. */
  sums: Float64Array;
  /** [exits * classes] counts. */
  counts: Float64Array;
}

/**
 * Train a subset of the trainable tensors with an optimizer of its own (personal adapters: the private exit heads on
 * top of the shared adapter), drawing minibatches from a generator of its own so the shared training's order is
 * untouched. The optimizer must be bound to this trainer's `params` arrays of exactly `names`.
 */
export interface StepScope {
  optimizer: Optimizer;
  names: readonly string[];
  rng: Rng;
  /**
   * A proximal term λ/2·||v − anchor||² over `names` (Ditto's personal objective): λ(v − anchor) is added to each
   * tensor's loss gradient before the optimizer step. `anchor` holds every name, same sizes as `params`.
   */
  prox?: { lambda: number; anchor: Weights };
}

export class TrainingError extends FmflError {
  constructor(message: string) {
    super('TRAINING', message);
  }
}

export class Trainer {
  readonly cfg: VitConfig;
  readonly lora: LoraConfig | null;
  readonly trainableSet: TrainableSet;
  readonly batch: number;
  readonly evalBatch: number;
  /** The trainable tensors (updated in place by step()). */
  readonly params: Weights;
  readonly specs: readonly ParamSpec[];
  /** Blocks (and exits) this trainer trains and evaluates: its depth budget. */
  readonly depth: number;
  /** The trainable tensors within the depth budget (all of `specs` at full depth), in `specs` order. */
  readonly trainedSpecs: readonly ParamSpec[];
  readonly frozen: Weights;
  readonly optimizer: Optimizer;
  readonly protoWeight: number;
  private readonly trainSession: Session;
  private readonly evalSession: Session;
  private readonly rng: Rng;
  private readonly xBuf: Float32Array;
  /** Input normalisation (undefined: the bundled backbones' mean 0.5, std 0.5). */
  private norm: Normalization | undefined;
  private readonly yBuf: BigInt64Array;
  private readonly xEval: Float32Array;
  private prototypes: { protos: Float32Array; mask: Float32Array } | null = null;
  private readonly logitBias: Float32Array | null;
  /** Outputs a training step needs (the graph's logits output is skipped). */
  private readonly trainFetches: string[];

  private constructor(o: {
    cfg: VitConfig; lora: LoraConfig | null; set: TrainableSet; batch: number; evalBatch: number; params: Weights; specs: ParamSpec[]; depth: number; trainedSpecs: ParamSpec[];
    frozen: Weights; optimizer: Optimizer; train: Session; evalS: Session; seed: number; protoWeight: number; logitAdjust: boolean;
    norm?: Normalization;
  }) {
    if (o.norm) this.norm = o.norm;
    this.cfg = o.cfg;
    this.lora = o.lora;
    this.trainableSet = o.set;
    this.batch = o.batch;
    this.evalBatch = o.evalBatch;
    this.params = o.params;
    this.specs = o.specs;
    this.depth = o.depth;
    this.trainedSpecs = o.trainedSpecs;
    this.frozen = o.frozen;
    this.optimizer = o.optimizer;
    this.trainSession = o.train;
    this.evalSession = o.evalS;
    this.rng = new Rng(o.seed ^ 0x5eed);
    this.protoWeight = o.protoWeight;
    this.logitBias = o.logitAdjust ? new Float32Array(o.cfg.classes) : null;
    const px = o.cfg.channels * o.cfg.image * o.cfg.image;
    this.xBuf = new Float32Array(o.batch * px);
    this.yBuf = new BigInt64Array(o.batch);
    this.xEval = new Float32Array(o.evalBatch * px);
    this.trainFetches = ['loss', 'loss_ce', ...o.trainedSpecs.map((s) => gradName(s.name))];
  }

  static async create(opts: TrainerOptions): Promise<Trainer> {
    const cfg = opts.cfg;
    const set = opts.trainableSet;
    const lora = set === 'all' ? null : opts.lora;
    if (set === 'lora+heads' && !lora) throw new ConfigError('trainable set lora+heads needs a LoRA config');
    const batch = opts.batch ?? 64;
    const evalBatch = opts.evalBatch ?? 250;
    if (!Number.isInteger(batch) || batch < 1 || batch > 4096) throw new ConfigError('batch must be an integer in 1..4096');
    if (!Number.isInteger(evalBatch) || evalBatch < 1 || evalBatch > 4096) throw new ConfigError('evalBatch must be an integer in 1..4096');
    const seed = opts.seed ?? 0;
    const specs = trainableTensors(cfg, set, lora);
    const depth = opts.maxDepth ?? cfg.depth;
    const reach = tensorsUpToDepth(cfg, lora, depth);
    const trainedSpecs = specs.filter((s) => reach.has(s.name));
    const trainableNames = new Set(specs.map((s) => s.name));
    const fresh = initWeights(specs.filter((s) => !opts.weights.has(s.name)), seed);
    const params: Weights = new Map();
    for (const s of specs) {
      const src = opts.weights.get(s.name) ?? fresh.get(s.name)!;
      const n = s.shape.reduce((a, b) => a * b, 1);
      if (src.length !== n) throw new ConfigError(`weights: ${s.name} has ${src.length} values, expected [${s.shape.join(',')}]`);
      params.set(s.name, Float32Array.from(src));
    }
    // Frozen: every other tensor the graph uses (backbone, exits when not trained, LoRA when not trained).
    const frozen: Weights = new Map();
    const needed = modelTensors(cfg, lora);
    for (const s of needed) {
      if (trainableNames.has(s.name)) continue;
      const w = opts.weights.get(s.name);
      if (!w) throw new ConfigError(`weights: frozen tensor ${s.name} is missing from the backbone`);
      frozen.set(s.name, w);
    }
    const protoWeight = opts.protoWeight ?? 0;
    const common = { cfg, lora, trainable: trainedSpecs, frozen, fusedGelu: opts.fusedGelu, blocks: depth };
    const trainG = buildTrainGraph({ ...common, batch, protoWeight, logitAdjust: opts.logitAdjust, distillWeight: opts.distillWeight, distillTemperature: opts.distillTemperature });
    const evalG = buildInferGraph({ ...common, batch: evalBatch });
    const sOpts = { provider: opts.provider, threads: opts.threads, logger: opts.logger };
    const open = opts.shareSessions === false ? Session.create : Session.shared;
    const [train, evalS] = await Promise.all([open(trainG.onnx, sOpts), open(evalG.onnx, sOpts)]);
    const oc = opts.optimizer ?? { kind: 'adamw', lr: 1e-3, weightDecay: 0.01 };
    const clip = opts.clipNorm !== undefined ? { maxGradNorm: opts.clipNorm } : {};
    // The optimizer steps the tensors within the depth budget (the same arrays as `params`).
    const stepped: Weights = new Map(trainedSpecs.map((s) => [s.name, params.get(s.name)!]));
    const optimizer: Optimizer =
      oc.kind === 'adamw'
        ? new AdamW(stepped, { lr: oc.lr, weightDecay: oc.weightDecay ?? 0.01, betas: oc.betas, ...clip })
        : new SGD(stepped, { lr: oc.lr, momentum: oc.momentum ?? 0.9, weightDecay: oc.weightDecay ?? 0, nesterov: oc.nesterov, ...clip });
    return new Trainer({ cfg, lora, set, batch, evalBatch, params, specs, depth, trainedSpecs, frozen, optimizer, train, evalS, seed, protoWeight, logitAdjust: !!opts.logitAdjust, norm: opts.norm });
  }

  /**
   * Global prototypes for the prototype term: [exits, classes, dim] and a [exits, classes] validity mask over all
   * of the model's exits (a depth-budget trainer uses its first `depth`).
   */
  setPrototypes(protos: Float32Array, mask: Float32Array): void {
    const E = this.cfg.depth;
    const C = this.cfg.classes;
    if (protos.length !== E * C * this.cfg.dim || mask.length !== E * C) throw new TrainingError('prototype tensors have the wrong size');
    const k = this.depth;
    this.prototypes = { protos: protos.subarray(0, k * C * this.cfg.dim), mask: mask.subarray(0, k * C) };
  }

  /**
   * The per-class bias the training loss adds to every exit's logits (needs `logitAdjust`). For balanced softmax
   * under label skew, pass `logPriorBias(labelCounts)`. Finite values only.
   */
  setLogitBias(bias: ArrayLike<number>): void {
    if (!this.logitBias) throw new TrainingError('this trainer was created without logitAdjust');
    if (bias.length !== this.cfg.classes) throw new TrainingError(`logit bias needs ${this.cfg.classes} values, got ${bias.length}`);
    for (let c = 0; c < bias.length; c++) {
      if (!Number.isFinite(bias[c])) throw new TrainingError(`logit bias for class ${c} is ${bias[c]}`);
    }
    this.logitBias.set(bias);
  }

  private paramFeeds(): Record<string, FeedValue> {
    const feeds: Record<string, FeedValue> = {};
    for (const s of this.trainedSpecs) feeds[s.name] = { data: this.params.get(s.name)!, dims: s.shape };
    return feeds;
  }

  /** A dataset whose images or labels do not fit the model is a TrainingError that names both shapes. */
  private checkDataset(ds: Dataset): void {
    const c = this.cfg;
    if (ds.channels !== c.channels || ds.height !== c.image || ds.width !== c.image) {
      throw new TrainingError(`dataset ${ds.name} holds ${ds.channels}x${ds.height}x${ds.width} images, the model takes ${c.channels}x${c.image}x${c.image}`);
    }
    if (ds.numClasses > c.classes) throw new TrainingError(`dataset ${ds.name} has ${ds.numClasses} classes, the model's exits predict ${c.classes}`);
  }

  /**
   * One optimizer step on the samples `indices` of `ds` (exactly `batch` of them). Returns the loss before the
   * update. Throws TrainingError (and leaves the weights untouched) if the loss or a gradient is not finite.
   */
  async step(ds: Dataset, indices: ArrayLike<number>, scope?: StepScope): Promise<{ loss: number; lossCe: number }> {
    if (indices.length !== this.batch) throw new TrainingError(`step needs exactly ${this.batch} samples, got ${indices.length}`);
    this.checkDataset(ds);
    toFloatBatch(ds, indices, this.xBuf, this.norm);
    for (let i = 0; i < this.batch; i++) this.yBuf[i] = BigInt(ds.labels[indices[i]]);
    const feeds = this.paramFeeds();
    feeds[IMAGES] = { data: this.xBuf, dims: [this.batch, this.cfg.channels, this.cfg.image, this.cfg.image] };
    feeds[LABELS] = { data: this.yBuf, dims: [this.batch] };
    if (this.logitBias) feeds[LOGIT_BIAS] = { data: this.logitBias, dims: [this.cfg.classes] };
    if (this.protoWeight > 0) {
      const E = this.depth;
      const C = this.cfg.classes;
      const p = this.prototypes ?? { protos: new Float32Array(E * C * this.cfg.dim), mask: new Float32Array(E * C) };
      feeds[PROTOTYPES] = { data: p.protos, dims: [E, C, this.cfg.dim] };
      feeds[PROTO_MASK] = { data: p.mask, dims: [E, C] };
    }
    const names = scope ? scope.names : this.trainedSpecs.map((s) => s.name);
    const out = await this.trainSession.run(feeds, scope ? ['loss', 'loss_ce', ...names.map(gradName)] : this.trainFetches);
    const loss = Number(out.loss[0]);
    const lossCe = Number(out.loss_ce[0]);
    if (!Number.isFinite(loss)) throw new TrainingError(`loss is ${loss}; lower the learning rate`);
    const grads = new Map<string, Float32Array>();
    for (const n of names) grads.set(n, out[gradName(n)] as Float32Array);
    if (scope?.prox) addProximal(grads, this.params, scope.prox.anchor, scope.prox.lambda);
    (scope?.optimizer ?? this.optimizer).step(grads);
    return { loss, lossCe };
  }

  /**
   * `steps` optimizer steps over shuffled minibatches of `indices` (reshuffled each pass; a pass drops its
   * last partial batch). Returns the mean loss. Stops early (between steps) once `signal.aborted` is set. With
   * `scope`, only `scope.names` are stepped, by `scope.optimizer`, in an order drawn from `scope.rng`.
   */
  async trainSteps(
    ds: Dataset,
    indices: ArrayLike<number>,
    steps: number,
    onStep?: (i: number, loss: number) => void,
    signal?: { readonly aborted: boolean },
    scope?: StepScope,
  ): Promise<number> {
    if (indices.length < this.batch) throw new TrainingError(`need at least ${this.batch} samples to train, have ${indices.length}`);
    const order = Uint32Array.from(indices as ArrayLike<number>);
    const perPass = Math.floor(order.length / this.batch);
    let pos = perPass; // force a shuffle first
    let sum = 0;
    let done = 0;
    for (let i = 0; i < steps; i++) {
      if (signal?.aborted) break;
      if (pos >= perPass) {
        (scope?.rng ?? this.rng).shuffle(order);
        pos = 0;
      }
      const { loss } = await this.step(ds, order.subarray(pos * this.batch, (pos + 1) * this.batch), scope);
      pos++;
      sum += loss;
      done++;
      onStep?.(i, loss);
    }
    return done > 0 ? sum / done : NaN;
  }

  /** Run the inference graph over `indices` (all of `ds` by default), calling `visit` per batch. */
  private async forEachEvalBatch(ds: Dataset, indices: ArrayLike<number> | undefined, visit: (out: Record<string, ArrayLike<number>>, idx: ArrayLike<number>, valid: number) => void): Promise<void> {
    this.checkDataset(ds);
    const idx = indices ?? Uint32Array.from({ length: ds.n }, (_, i) => i);
    const B = this.evalBatch;
    const feeds = this.paramFeeds();
    const chunk = new Uint32Array(B);
    for (let start = 0; start < idx.length; start += B) {
      const valid = Math.min(B, idx.length - start);
      for (let i = 0; i < B; i++) chunk[i] = idx[start + Math.min(i, valid - 1)];
      toFloatBatch(ds, chunk, this.xEval, this.norm);
      feeds[IMAGES] = { data: this.xEval, dims: [B, this.cfg.channels, this.cfg.image, this.cfg.image] };
      const out = await this.evalSession.run(feeds);
      visit(out as Record<string, ArrayLike<number>>, chunk, valid);
    }
  }

  /** Accuracy and loss of every exit it serves (1..depth), and of their ensemble, on `indices` of `ds` (all by default). */
  async evaluate(ds: Dataset, indices?: ArrayLike<number>): Promise<EvalResult> {
    const E = this.depth;
    const C = this.cfg.classes;
    const correct = new Array<number>(E).fill(0);
    const lossSum = new Array<number>(E).fill(0);
    let ensCorrect = 0;
    let n = 0;
    const probs = new Float64Array(C);
    const ens = new Float64Array(C);
    await this.forEachEvalBatch(ds, indices, (out, chunk, valid) => {
      for (let b = 0; b < valid; b++) {
        const y = ds.labels[chunk[b]];
        ens.fill(0);
        for (let e = 0; e < E; e++) {
          const lg = out[logitsName(e)];
          let max = -Infinity;
          let arg = 0;
          for (let c = 0; c < C; c++) {
            const v = lg[b * C + c];
            if (v > max) { max = v; arg = c; }
          }
          let z = 0;
          for (let c = 0; c < C; c++) z += (probs[c] = Math.exp(lg[b * C + c] - max));
          for (let c = 0; c < C; c++) ens[c] += probs[c] / z;
          lossSum[e] += Math.log(z) - (lg[b * C + y] - max);
          if (arg === y) correct[e]++;
        }
        let best = 0;
        for (let c = 1; c < C; c++) if (ens[c] > ens[best]) best = c;
        if (best === y) ensCorrect++;
        n++;
      }
    });
    return { n, accuracy: correct.map((c) => c / n), loss: lossSum.map((l) => l / n), ensembleAccuracy: ensCorrect / n };
  }

  /** Per-exit, per-class sums of exit embeddings and counts over `indices` (the local prototype statistics). */
  async prototypeStats(ds: Dataset, indices?: ArrayLike<number>): Promise<PrototypeStats> {
    const E = this.depth;
    const C = this.cfg.classes;
    const D = this.cfg.dim;
    const sums = new Float64Array(E * C * D);
    const counts = new Float64Array(E * C);
    await this.forEachEvalBatch(ds, indices, (out, chunk, valid) => {
      for (let e = 0; e < E; e++) {
        const z = out[embeddingName(e)];
        for (let b = 0; b < valid; b++) {
          const y = ds.labels[chunk[b]];
          counts[e * C + y]++;
          const base = (e * C + y) * D;
          for (let k = 0; k < D; k++) sums[base + k] += z[b * D + k];
        }
      }
    });
    return { exits: E, classes: C, dim: D, sums, counts };
  }

  /** Replace the trainable tensors' values (e.g. with a new global model); shapes must match. */
  loadParams(values: Weights): void {
    for (const s of this.specs) {
      const v = values.get(s.name);
      if (!v) continue;
      const dst = this.params.get(s.name)!;
      if (v.length !== dst.length) throw new TrainingError(`loadParams: ${s.name} has ${v.length} values, expected ${dst.length}`);
      for (const x of v) if (!Number.isFinite(x)) throw new TrainingError(`loadParams: ${s.name} holds a non-finite value`);
      dst.set(v);
    }
  }

  /** Deep copy of the trainable tensors. */
  snapshot(): Weights {
    return new Map([...this.params].map(([k, v]) => [k, Float32Array.from(v)]));
  }

  /** All weights of the current model (frozen + trainable), e.g. to save a full checkpoint. */
  allWeights(): Weights {
    return new Map([...this.frozen, ...this.snapshot()]);
  }

  optimizerState(): OptimizerState {
    return this.optimizer.state();
  }

  /** Execution provider the training session actually runs on (`cuda` only when its provider loaded). */
  get provider(): 'cpu' | 'cuda' {
    return this.trainSession.provider;
  }

  async release(): Promise<void> {
    await Promise.all([this.trainSession.release(), this.evalSession.release()]);
  }
}

/** grads[n] ← grads[n] + λ(params[n] − anchor[n]) for each n of `grads` (copies, so a session's output is untouched). */
function addProximal(grads: Map<string, Float32Array>, params: Weights, anchor: Weights, lambda: number): void {
  for (const [n, g] of grads) {
    const v = params.get(n)!;
    const w = anchor.get(n);
    if (!w || w.length !== v.length) throw new TrainingError(`proximal anchor for ${n} is missing or of the wrong size`);
    const out = new Float32Array(g.length);
    for (let i = 0; i < g.length; i++) out[i] = g[i] + lambda * (v[i] - w[i]);
    grads.set(n, out);
  }
}

/**
 * log of the Laplace-smoothed label prior, (n_c + 1) / (N + C): the balanced-softmax bias for a node whose
 * samples have these per-class counts.
 */
export function logPriorBias(labelCounts: ArrayLike<number>): Float32Array {
  let total = 0;
  for (let c = 0; c < labelCounts.length; c++) total += labelCounts[c];
  return Float32Array.from({ length: labelCounts.length }, (_, c) => Math.log((labelCounts[c] + 1) / (total + labelCounts.length)));
}
