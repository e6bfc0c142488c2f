/**
 * Multi-scale anytime inference on one node (Liu et al. 2022's deploy-time exits): the ViT runs as per-block
 * segment sessions (src/model/segments.ts) so one pass can stop after any exit, either at the exit asked for
 * or when the time budget would be exceeded by the next segment. Per-exit latency is calibrated on the node
 * (batch 1 and batch 64); `exit: 'auto'` plans the deepest exit whose calibrated latency fits the budget.
 */
import type { InputSpec } from '../data/index.ts';
import type { Backbone } from '../model/backbone.ts';
import { IMAGES } from '../model/graphs.ts';
import type { ModelCheckpoint, Prototypes } from '../model/model-checkpoint.ts';
import { buildSegmentGraphs, hiddenShape, HIDDEN_NEXT } from '../model/segments.ts';
import type { ParamSpec, VitConfig, Weights } from '../model/vit.ts';
import { modelTensors, trainableTensors } from '../model/architecture.ts';
import { Session, type ExecutionProvider, type FeedValue } from '../runtime/index.ts';
import { argmax, meanProbs, prototypeProbs, softmax } from './combine.ts';
import { InferError } from './errors.ts';

/** Batch sizes with prebuilt segment sessions: 1 (one request) and 64 (throughput); n in 2..64 is padded to 64. */
export const INFER_BATCHES = [1, 64] as const;
/** Largest number of images one `forward` call accepts. */
export const MAX_INFER_BATCH = 64;

/**
 * Default intra-op threads of a segment session: 1. Segments run back to back in different sessions, and
 * onnxruntime's pool threads keep spinning after a run, starving the next session's threads: on the 2-core
 * reference machine 4 exits at batch 64 took 109 ms with 2 threads per session and 19 ms with 1
 * (batch 1: 0.60 vs 0.58 ms). src/runtime does not expose `session.intra_op.allow_spinning` yet.
 */
export const DEFAULT_SEGMENT_THREADS = 1;

/** How a prediction is formed at the chosen exit. */
export type PredictMode = 'head' | 'prototype' | 'ensemble';
/** The modes, for validation of user input. */
export const PREDICT_MODES: readonly PredictMode[] = ['head', 'prototype', 'ensemble'];

/** Calibrated cumulative latency in ms to finish exit e (index e), per batch size. */
export interface ExitLatency {
  batch1: number[];
  batch64: number[];
}

/** Options of {@link AnytimeModel.create}. */
export interface AnytimeModelOptions {
  checkpoint: ModelCheckpoint;
  backbone: Backbone;
  provider?: ExecutionProvider;
  /**
   * onnxruntime intra-op threads per segment session (default {@link DEFAULT_SEGMENT_THREADS}).
   */
  threads?: number;
  /** Deepest exit this node runs (1-based count of blocks, default all): a weak node serves shallower exits. */
  maxExits?: number;
  /** Clock in ms (default performance.now); tests inject a deterministic one. */
  now?: () => number;
}

/** When to stop a progressive pass. */
export interface ForwardOptions {
  /** Stop after this exit (0-based); default the deepest this node runs. */
  exit?: number;
  /**
   * Time budget in ms from the call: before each further segment, stop if elapsed time plus that segment's
   * calibrated latency (or, uncalibrated, nothing) would exceed it. Exit 0 always runs.
   */
  budgetMs?: number;
}

/** Outputs of every exit a pass finished. */
export interface ForwardResult {
  n: number;
  /** Per finished exit (index = exit): logits [n * C] and embeddings [n * D]. */
  logits: Float32Array[];
  embeddings: Float32Array[];
  /** Deepest exit finished (0-based). */
  exit: number;
  /** Why the pass stopped. */
  stoppedBy: 'exit' | 'budget';
  /** Wall time of the pass, ms. */
  ms: number;
}

/** One image's prediction. */
export interface Prediction {
  /** Class probabilities [C]. */
  probs: Float64Array;
  label: number;
  /** Deepest exit used (0-based). */
  exit: number;
  mode: PredictMode;
}

/**
 * Plan the exit for a budget: the deepest exit whose calibrated cumulative latency fits `budgetMs`, never
 * above `maxExit`; exit 0 when none fits.
 */
export function planExit(latencyMs: readonly number[], budgetMs: number, maxExit = latencyMs.length - 1): number {
  let e = 0;
  for (let i = 0; i <= Math.min(maxExit, latencyMs.length - 1); i++) if (latencyMs[i] <= budgetMs) e = i;
  return e;
}

interface SegmentSession {
  session: Session;
  params: ParamSpec[];
  input: string;
  hasHidden: boolean;
}

/** A loaded model that runs exits progressively. Create with {@link AnytimeModel.create}; call `release()`. */
export class AnytimeModel {
  readonly cfg: VitConfig;
  /** Number of exits this node runs. */
  readonly exits: number;
  readonly version: string;
  readonly backboneName: string;
  /** The images the model takes (size, channels, normalisation: the backbone's input spec). */
  readonly input: InputSpec;
  /** Class names in label order (the checkpoint's, else the label numbers). */
  readonly labels: readonly string[];
  latency: ExitLatency | null = null;
  private checkpoint: ModelCheckpoint;
  private readonly sessions = new Map<number, SegmentSession[]>();
  private readonly now: () => number;
  private feeds: Record<string, FeedValue> = {};

  private constructor(checkpoint: ModelCheckpoint, exits: number, now: () => number, input: InputSpec) {
    this.checkpoint = checkpoint;
    this.cfg = checkpoint.cfg;
    this.input = input;
    this.labels = checkpoint.labels ?? Array.from({ length: checkpoint.cfg.classes }, (_, i) => String(i));
    this.exits = exits;
    this.version = checkpoint.version;
    this.backboneName = checkpoint.backbone;
    this.now = now;
  }

  /**
   * Build the segment sessions for batch 1 and 64 from a model checkpoint on its backbone.
   * @throws InferError when the checkpoint does not belong to the backbone.
   */
  static async create(o: AnytimeModelOptions): Promise<AnytimeModel> {
    const ck = o.checkpoint;
    const bb = o.backbone;
    if (ck.backbone !== bb.manifest.name) throw new InferError('MODEL_MISMATCH', `the checkpoint was trained on backbone ${ck.backbone}, not ${bb.manifest.name}`);
    // The exit heads follow the federation's label set, so only the class count may differ from the backbone's.
    if (JSON.stringify({ ...ck.cfg, classes: 0 }) !== JSON.stringify({ ...bb.cfg, classes: 0 })) throw new InferError('MODEL_MISMATCH', `the checkpoint's model config does not match backbone ${bb.manifest.name}`);
    const depth = ck.cfg.depth;
    const exits = o.maxExits ?? depth;
    if (!Number.isInteger(exits) || exits < 1 || exits > depth) throw new InferError('BAD_OPTION', `maxExits must be in 1..${depth}`);
    const trainable = trainableTensors(ck.cfg, ck.trainableSet, ck.lora);
    const names = new Set(trainable.map((s) => s.name));
    const frozen: Weights = new Map();
    for (const s of modelTensors(ck.cfg, ck.lora)) {
      if (names.has(s.name)) continue;
      const w = bb.weights.get(s.name);
      if (!w) throw new InferError('MODEL_MISMATCH', `backbone ${bb.manifest.name} lacks tensor ${s.name}`);
      frozen.set(s.name, w);
    }
    const m = new AnytimeModel(ck, exits, o.now ?? (() => performance.now()), bb.input);
    const byName = new Map(trainable.map((s) => [s.name, s]));
    for (const batch of INFER_BATCHES) {
      const graphs = buildSegmentGraphs({ cfg: ck.cfg, lora: ck.lora, trainable, frozen, batch, blocks: exits });
      const segs: SegmentSession[] = [];
      for (const g of graphs) {
        const session = await Session.create(g.onnx, { provider: o.provider, threads: o.threads ?? DEFAULT_SEGMENT_THREADS });
        segs.push({ session, params: g.params.map((n) => byName.get(n)!), input: g.input, hasHidden: g.hasHidden });
      }
      m.sessions.set(batch, segs);
    }
    m.setWeights(ck.weights);
    return m;
  }

  /** The checkpoint in use. */
  get model(): ModelCheckpoint {
    return this.checkpoint;
  }

  /** Replace the trainable tensors (a new global model) without rebuilding sessions. Shapes are checked. */
  setWeights(weights: Weights, version?: string): void {
    const specs = trainableTensors(this.cfg, this.checkpoint.trainableSet, this.checkpoint.lora);
    const feeds: Record<string, FeedValue> = {};
    for (const s of specs) {
      const w = weights.get(s.name);
      if (!w || w.length !== s.shape.reduce((a, b) => a * b, 1)) throw new InferError('MODEL_MISMATCH', `setWeights: tensor ${s.name} is missing or misshapen`);
      feeds[s.name] = { data: w, dims: s.shape };
    }
    this.feeds = feeds;
    this.checkpoint = { ...this.checkpoint, weights, version: version ?? this.checkpoint.version };
    (this as { version: string }).version = this.checkpoint.version;
  }

  /** Replace the class prototypes (e.g. recomputed from local data, or a new global set). Sizes are checked. */
  setPrototypes(p: Prototypes | null): void {
    const E = this.cfg.depth, C = this.cfg.classes, D = this.cfg.dim;
    if (p && (p.means.length !== E * C * D || p.counts.length !== E * C)) throw new InferError('MODEL_MISMATCH', `prototypes must be [${E},${C},${D}] with counts [${E},${C}]`);
    this.checkpoint = { ...this.checkpoint, prototypes: p };
  }

  /** Pixels per image (channels * image * image). */
  get pixels(): number {
    return this.cfg.channels * this.cfg.image * this.cfg.image;
  }

  /**
   * Run exits progressively on `n` normalized images (`images` holds n * pixels floats, see toFloatBatch),
   * stopping at `opts.exit` or when the budget would be exceeded.
   * @throws InferError on bad arguments.
   */
  async forward(images: Float32Array, n: number, opts: ForwardOptions = {}): Promise<ForwardResult> {
    const t0 = this.now();
    if (!Number.isInteger(n) || n < 1 || n > MAX_INFER_BATCH) throw new InferError('BAD_INPUT', `a forward pass takes 1..${MAX_INFER_BATCH} images, got ${n}`);
    if (images.length !== n * this.pixels) throw new InferError('BAD_INPUT', `expected ${n * this.pixels} pixel values for ${n} images, got ${images.length}`);
    const last = opts.exit ?? this.exits - 1;
    if (!Number.isInteger(last) || last < 0 || last >= this.exits) throw new InferError('BAD_OPTION', `exit must be in 0..${this.exits - 1} on this node`);
    const budget = opts.budgetMs;
    if (budget !== undefined && !(Number.isFinite(budget) && budget > 0)) throw new InferError('BAD_OPTION', 'budgetMs must be a positive number');
    const batch = n === 1 ? 1 : 64;
    const segs = this.sessions.get(batch)!;
    let x = images;
    if (n !== batch) {
      x = new Float32Array(batch * this.pixels);
      x.set(images);
    }
    const cum = this.latency ? (batch === 1 ? this.latency.batch1 : this.latency.batch64) : null;
    const C = this.cfg.classes;
    const D = this.cfg.dim;
    const logits: Float32Array[] = [];
    const embeddings: Float32Array[] = [];
    let stoppedBy: ForwardResult['stoppedBy'] = 'exit';
    let hidden: Float32Array | null = null;
    for (let e = 0; e <= last; e++) {
      if (e > 0 && budget !== undefined) {
        const next = cum ? cum[e] - cum[e - 1] : 0;
        if (this.now() - t0 + next > budget) {
          stoppedBy = 'budget';
          break;
        }
      }
      const seg = segs[e];
      const feeds: Record<string, FeedValue> = {};
      for (const p of seg.params) feeds[p.name] = this.feeds[p.name];
      feeds[seg.input] = seg.input === IMAGES
        ? { data: x, dims: [batch, this.cfg.channels, this.cfg.image, this.cfg.image] }
        : { data: hidden!, dims: hiddenShape({ cfg: this.cfg, batch }, e - 1) };
      const fetch = [`logits:${e}`, `embedding:${e}`];
      if (seg.hasHidden && e < last) fetch.push(HIDDEN_NEXT);
      const out = await seg.session.run(feeds, fetch);
      logits.push((out[`logits:${e}`] as Float32Array).slice(0, n * C));
      embeddings.push((out[`embedding:${e}`] as Float32Array).slice(0, n * D));
      hidden = (out[HIDDEN_NEXT] as Float32Array | undefined) ?? null;
    }
    return { n, logits, embeddings, exit: logits.length - 1, stoppedBy, ms: this.now() - t0 };
  }

  /**
   * Predictions per image from a forward result: `head` (softmax of the deepest finished exit), `prototype`
   * (nearest class prototype at that exit; needs prototypes in the checkpoint) or `ensemble` (mean of the
   * softmax of every finished exit).
   */
  predictions(r: ForwardResult, mode: PredictMode = 'head'): Prediction[] {
    const C = this.cfg.classes;
    const D = this.cfg.dim;
    const e = r.exit;
    const protos = this.checkpoint.prototypes;
    if (mode === 'prototype' && !protos) throw new InferError('BAD_OPTION', 'this checkpoint has no prototypes; use mode head or ensemble');
    const out: Prediction[] = [];
    for (let b = 0; b < r.n; b++) {
      let probs: Float64Array;
      if (mode === 'head') probs = softmax(r.logits[e], b * C, C);
      else if (mode === 'prototype') probs = prototypeProbs(r.embeddings[e], b * D, D, protos!.means, e * C * D, protos!.counts, e * C, C);
      else probs = meanProbs(r.logits.map((l) => softmax(l, b * C, C)));
      out.push({ probs, label: argmax(probs), exit: e, mode });
    }
    return out;
  }

  /** Forward + predictions. `exit: 'auto'` plans the deepest exit that fits `budgetMs` from the calibration. */
  async predict(images: Float32Array, n: number, opts: { exit?: number | 'auto'; budgetMs?: number; mode?: PredictMode } = {}): Promise<{ predictions: Prediction[]; result: ForwardResult }> {
    let exit = opts.exit;
    if (exit === 'auto') {
      if (opts.budgetMs === undefined) throw new InferError('BAD_OPTION', 'exit auto needs a budget (budgetMs)');
      exit = this.planExit(opts.budgetMs, n);
    }
    const result = await this.forward(images, n, { exit, budgetMs: opts.budgetMs });
    return { predictions: this.predictions(result, opts.mode), result };
  }

  /** The exit `exit: 'auto'` picks for a budget and batch size (deepest that fits; 0 if uncalibrated). */
  planExit(budgetMs: number, n = 1): number {
    if (!this.latency) return 0;
    return planExit(n === 1 ? this.latency.batch1 : this.latency.batch64, budgetMs, this.exits - 1);
  }

  /**
   * Measure cumulative per-exit latency (median of `repeats` full passes after `warmup`) at batch 1 and 64
   * on zero images, store it in `latency`, and return it.
   */
  async calibrate(opts: { repeats?: number; warmup?: number } = {}): Promise<ExitLatency> {
    const repeats = opts.repeats ?? 20;
    const warmup = opts.warmup ?? 3;
    const res: ExitLatency = { batch1: [], batch64: [] };
    for (const batch of INFER_BATCHES) {
      const segs = this.sessions.get(batch)!;
      const img = new Float32Array(batch * this.pixels);
      const samples: number[][] = segs.map(() => []);
      for (let r = 0; r < warmup + repeats; r++) {
        let hidden: Float32Array | null = null;
        let t = performance.now();
        let acc = 0;
        for (let e = 0; e < segs.length; e++) {
          const seg = segs[e];
          const feeds: Record<string, FeedValue> = {};
          for (const p of seg.params) feeds[p.name] = this.feeds[p.name];
          feeds[seg.input] = seg.input === IMAGES ? { data: img, dims: [batch, this.cfg.channels, this.cfg.image, this.cfg.image] } : { data: hidden!, dims: hiddenShape({ cfg: this.cfg, batch }, e - 1) };
          const fetch = [`logits:${e}`, `embedding:${e}`, ...(seg.hasHidden ? [HIDDEN_NEXT] : [])];
          const out = await seg.session.run(feeds, fetch);
          hidden = (out[HIDDEN_NEXT] as Float32Array | undefined) ?? null;
          const t1 = performance.now();
          acc += t1 - t;
          t = t1;
          if (r >= warmup) samples[e].push(acc);
        }
      }
      const med = samples.map((s) => s.sort((a, b) => a - b)[s.length >> 1]);
      if (batch === 1) res.batch1 = med;
      else res.batch64 = med;
    }
    this.latency = res;
    return res;
  }

  async release(): Promise<void> {
    for (const segs of this.sessions.values()) await Promise.all(segs.map((s) => s.session.release()));
    this.sessions.clear();
  }
}
