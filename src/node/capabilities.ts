/**
 * Capabilities measured when a node starts, instead of declared by hand: the execution provider its sessions
 * actually run on, training throughput (a few seeded LoRA steps on the configured backbone, samples/s) and the
 * per-exit latency of the anytime model (a few timed progressive forwards, batch 1 and 64). Hand-declared values
 * in a profile's `capabilities` only cap what is advertised (`maxExitDepth`, `loraRank`: budgets).
 */
import { loadBackboneShared } from '../model/backbone.ts';
import { exitTensorNames } from '../model/architecture.ts';
import { exitSpecs, initWeights, loraSpecs, type LoraConfig, type Weights } from '../model/vit.ts';
import { Trainer } from '../train/trainer.ts';
import { AnytimeModel, type ExitLatency } from '../infer/anytime.ts';
import { latencyFeatures } from '../infer/service.ts';
import { FederationConfigSchema } from '../round/federation.ts';
import { depthFractions } from '../round/budget-auto.ts';
import { Rng } from '../util/rng.ts';
import type { Capabilities } from '../mesh/membership.ts';
import type { Dataset } from '../data/types.ts';
import type { NodeConfig } from './config.ts';

/** Timed LoRA steps of the throughput measurement (after one warm-up step). */
export const MEASURE_TRAIN_STEPS = 3;
/** Timed progressive forwards per exit and batch size of the latency measurement (after one warm-up). */
export const MEASURE_FORWARDS = 3;
/** Batch of the throughput measurement when the config trains with a larger one (keeps start-up short). */
export const MEASURE_MAX_BATCH = 32;

/** What a node measured at start. */
export interface MeasuredCapabilities {
  /** Execution provider of the measured sessions (`cpu`, or `cuda` when the CUDA provider loaded). */
  device: 'cpu' | 'cuda';
  /** Training samples per second of LoRA steps on the configured backbone. */
  trainThroughput: number;
  /** Batch and steps the throughput was measured with. */
  trainBatch: number;
  trainSteps: number;
  /** Cumulative latency per exit, ms (batch 1 and 64). */
  exitLatencyMs: ExitLatency;
  /** Exits of the backbone (the deepest exit this node can run). */
  exits: number;
  backbone: string;
  /** Wall time of the measurement, ms. */
  ms: number;
}

/** Inputs of {@link measureCapabilities}, taken from a node config. */
export interface MeasureOptions {
  backbone?: string;
  /** Folder of the backbone (default models/). */
  backboneDir?: string;
  rank?: number;
  loraAlpha?: number;
  loraTargets?: LoraConfig['targets'];
  batch?: number;
  threads?: number;
  device?: 'cpu' | 'cuda' | 'auto';
  steps?: number;
  forwards?: number;
  /** `--emulate-slowdown`: the measured training steps are slowed down like the node's own (TrainerOptions.slowdown). */
  slowdown?: number;
  /** Latency already calibrated (the checkpoint a node serves): the backbone's is then not measured again. */
  latency?: ExitLatency | null;
}

/** The measurement's options from a node config (the `fl` section's backbone, LoRA, batch, threads, device). */
export function measureOptionsOf(cfg: NodeConfig): MeasureOptions {
  const o = measureOptionsOfFl(cfg.fl ?? {});
  return { ...o, threads: o.threads ?? cfg.infer?.threads };
}

/** The measurement's options from `fl` settings alone (the in-process simulator's nodes have no node config). */
export function measureOptionsOfFl(input: unknown): MeasureOptions {
  const fl = FederationConfigSchema.partial().parse(input ?? {});
  return { backbone: fl.backbone, backboneDir: fl.backboneDir, rank: fl.rank, loraAlpha: fl.loraAlpha, loraTargets: fl.loraTargets, batch: fl.batch, threads: fl.threads, device: fl.device, slowdown: fl.emulateSlowdown };
}

function syntheticData(n: number, channels: number, size: number, classes: number, seed: number): Dataset {
  const rng = new Rng(seed);
  const images = new Uint8Array(n * channels * size * size);
  for (let i = 0; i < images.length; i++) images[i] = rng.nextU32() & 255;
  const labels = Uint8Array.from({ length: n }, (_, i) => i % classes);
  return { name: 'measure', split: 'train', n, images, labels, numClasses: classes, classNames: Array.from({ length: classes }, (_, i) => String(i)), height: size, width: size, channels };
}

/**
 * Measure device, training throughput and per-exit latency on the configured backbone. Seeded synthetic images
 * (the numbers depend on shapes, not on pixel values); every session is released before it returns.
 */
export async function measureCapabilities(o: MeasureOptions = {}): Promise<MeasuredCapabilities> {
  const t0 = performance.now();
  const bb = await loadBackboneShared(o.backbone, o.backboneDir);
  const lora: LoraConfig = { rank: o.rank ?? 8, alpha: o.loraAlpha ?? 64, targets: o.loraTargets ?? ['q', 'k', 'v', 'proj', 'fc1', 'fc2'] };
  const batch = Math.min(o.batch ?? 64, MEASURE_MAX_BATCH);
  const steps = o.steps ?? MEASURE_TRAIN_STEPS;
  const heads = exitTensorNames(bb.cfg);
  const weights = new Map([...bb.weights].filter(([k]) => !heads.has(k)));
  const trainer = await Trainer.create({ cfg: bb.cfg, lora, norm: bb.input, trainableSet: 'lora+heads', weights, batch, seed: 1, threads: o.threads, provider: o.device, optimizer: { kind: 'adamw', lr: 1e-3, weightDecay: 0.01 }, slowdown: o.slowdown });
  let trainThroughput: number;
  let device: 'cpu' | 'cuda';
  try {
    device = trainer.provider;
    const ds = syntheticData(batch * 2, bb.input.channels, bb.input.size, bb.cfg.classes, 7);
    const idx = Uint32Array.from({ length: ds.n }, (_, i) => i);
    await trainer.trainSteps(ds, idx, 1);
    const ts = performance.now();
    await trainer.trainSteps(ds, idx, steps);
    trainThroughput = (steps * batch) / Math.max(1e-6, (performance.now() - ts) / 1000);
  } finally {
    await trainer.release();
  }
  if (o.latency) return { device, trainThroughput, trainBatch: batch, trainSteps: steps, exitLatencyMs: o.latency, exits: o.latency.batch1.length, backbone: bb.manifest.name, ms: performance.now() - t0 };
  // The anytime model on the backbone's own exit heads and a seeded LoRA: the same graphs a served checkpoint runs.
  const w: Weights = initWeights(loraSpecs(bb.cfg, lora), 1);
  for (const s of exitSpecs(bb.cfg)) w.set(s.name, bb.weights.get(s.name)!);
  const model = await AnytimeModel.create({
    checkpoint: { backbone: bb.manifest.name, cfg: bb.cfg, lora, trainableSet: 'lora+heads', version: 'measure', round: 0, source: 'centralized', weights: w, prototypes: null },
    backbone: bb, provider: o.device, threads: o.threads,
  });
  let exitLatencyMs: ExitLatency;
  try {
    exitLatencyMs = await model.calibrate({ repeats: o.forwards ?? MEASURE_FORWARDS, warmup: 1 });
  } finally {
    await model.release();
  }
  return { device, trainThroughput, trainBatch: batch, trainSteps: steps, exitLatencyMs, exits: bb.cfg.depth, backbone: bb.manifest.name, ms: performance.now() - t0 };
}

/**
 * What a node advertises: the measured device, throughput, exit depth and latency features; `loraRank` the rank
 * it trains (0 when it does not train); hand-declared `maxExitDepth` / `loraRank` (> 0) cap the measured values;
 * `datasetSize` and `features` stay as declared.
 */
export function advertisedCapabilities(declared: Capabilities, m: MeasuredCapabilities, o: { trains: boolean; rank: number; maxExits?: number }): Capabilities {
  const cap = (v: number, c: number): number => (c > 0 ? Math.min(v, c) : v);
  const exits = cap(Math.min(m.exits, o.maxExits ?? m.exits), declared.maxExitDepth);
  const features = declared.features.filter((f) => !f.startsWith('infer-lat'));
  return {
    ...declared,
    device: m.device,
    trainThroughput: Math.round(m.trainThroughput * 10) / 10,
    maxExitDepth: exits,
    loraRank: o.trains ? cap(o.rank, declared.loraRank) : 0,
    features: [...features, ...latencyFeatures({ batch1: m.exitLatencyMs.batch1.slice(0, exits), batch64: m.exitLatencyMs.batch64.slice(0, exits) })].slice(0, 16),
  };
}

/**
 * Training throughput at the depth a node trains (`--max-depth k`): the full-depth measurement over f(k), the
 * measured share of the forward latency up to exit k (src/round/budget-auto.ts `depthFractions`, k / D when the
 * latencies are unusable). What the federation advertises once its depth is known, so that `--local-steps-auto`
 * compares members' step times at the depths they really train: measured at full depth, a depth-2 node was rated as
 * slow as a full one and given the step floor (bench:fleet-time, 2026-12-03). Null when nothing was measured.
 */
export function throughputAtDepth(m: MeasuredCapabilities | null, depth: number): number | null {
  if (!m || !(Number.isFinite(m.trainThroughput) && m.trainThroughput > 0) || !Number.isInteger(depth) || depth < 1) return null;
  if (depth >= m.exits) return m.trainThroughput;
  const f = depthFractions(m.exitLatencyMs.batch64, m.exits).f[depth - 1];
  return Math.round((m.trainThroughput / f) * 10) / 10;
}
