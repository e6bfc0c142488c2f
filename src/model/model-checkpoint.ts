/**
 * The model checkpoint a node deploys: the trainable state (LoRA A/B and exit heads, or whatever the trainable
 * set holds) on top of a named backbone, with per-exit class prototypes and a model version. Stored in the
 * generic checkpoint format (src/model/checkpoint.ts); the metadata says how to rebuild the model.
 *
 * Tensors: every trainable tensor by its model name, plus `prototypes` [E, C, D] (per exit, per class mean
 * exit embedding) and `prototype_counts` [E, C] (samples behind each mean; 0 = no prototype).
 * Metadata (`kind: "fmfl-model"`, `format: 1`): backbone name, model config, LoRA config, trainable set,
 * model version and round, and where the weights came from (`source`: "centralized" or "federated").
 */
import { z } from 'zod';
import { FmflError } from '../util/errors.ts';
import { loadCheckpoint, saveCheckpoint, type Checkpoint, type JsonValue, type LoadCheckpointOptions as GenericLoadOptions } from './checkpoint.ts';
import { ARCHITECTURES, architectureOf, trainableTensors } from './architecture.ts';
import { importedGraphOf } from './onnx/architecture.ts';
import { DEFAULT_BACKBONE, REFERENCE_BACKBONE, loadBackbone, loadBackboneShared } from './backbone.ts';
import { DEFAULT_LORA, LORA_TARGETS, LoraConfigSchema, TRAINABLE_SETS, type LoraTarget, VitConfigSchema, type LoraConfig, type TrainableSet, type VitConfig, type Weights } from './vit.ts';

/** Tensor name of the per-exit class prototypes [E, C, D]. */
export const PROTOTYPES_TENSOR = 'prototypes';
/** Tensor name of the per-exit class prototype counts [E, C]. */
export const PROTOTYPE_COUNTS_TENSOR = 'prototype_counts';
/** Metadata `kind` of a model checkpoint. */
export const MODEL_CHECKPOINT_KIND = 'fmfl-model';
/** Metadata format version this build writes and reads. */
export const MODEL_CHECKPOINT_FORMAT = 1;

/** Validate a config through its architecture. */
const validateConfig = (cfg: VitConfig): VitConfig => architectureOf(cfg).validate(cfg);

/** A model checkpoint is structurally valid but does not describe a usable model. */
export class ModelCheckpointError extends FmflError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MODEL_CHECKPOINT', message, options);
  }
}

const MetadataSchema = z.object({
  kind: z.literal(MODEL_CHECKPOINT_KIND),
  format: z.literal(MODEL_CHECKPOINT_FORMAT),
  backbone: z.string().min(1).max(128),
  config: VitConfigSchema,
  lora: LoraConfigSchema.nullable(),
  trainableSet: z.enum(TRAINABLE_SETS),
  version: z.string().min(1).max(128),
  round: z.number().int().min(0),
  source: z.enum(['centralized', 'federated']),
  /** Class names in label order (absent in checkpoints written before 2026-12: the labels are numbers). */
  labels: z.array(z.string().min(1).max(128)).min(1).max(256).optional(),
  info: z.record(z.string(), z.unknown()).optional(),
});

/** Per-exit, per-class prototypes. */
export interface Prototypes {
  /** [E * C * D] means (row-major [E, C, D]). */
  means: Float32Array;
  /** [E * C] counts (0: the class has no prototype at that exit). */
  counts: Float32Array;
}

/** A deployable model: backbone reference, trainable tensors, prototypes, version. */
export interface ModelCheckpoint {
  backbone: string;
  cfg: VitConfig;
  lora: LoraConfig | null;
  trainableSet: TrainableSet;
  /** Model version string (e.g. `r12-3fa1c0`, or `central-seed1`). Peers echo it in collaborative answers. */
  version: string;
  /** Federation round that produced it (0 for a centralized checkpoint). */
  round: number;
  source: 'centralized' | 'federated';
  /** The trainable tensors, by model name. */
  weights: Weights;
  prototypes: Prototypes | null;
  /** Class names in label order (length cfg.classes); absent: the labels are their numbers. */
  labels?: string[];
  /** Free-form provenance (recipe, accuracy, ...). */
  info?: Record<string, JsonValue>;
}

/** Options of {@link loadModelCheckpoint}. */
export interface LoadCheckpointOptions extends GenericLoadOptions {
  /**
   * LoRA alpha assumed when reading a federation state checkpoint (src/round, `kind: "federation"`), which does
   * not record it (default {@link DEFAULT_LORA}'s 16, the federation's default `loraAlpha`).
   */
  loraAlpha?: number;
  /** Folder of the checkpoint's backbone, loaded first when the model is an imported ONNX graph (default models/). */
  modelsDir?: string;
}

/** Write a model checkpoint atomically. @throws ModelCheckpointError on missing or misshapen tensors. */
export async function saveModelCheckpoint(path: string, m: ModelCheckpoint): Promise<void> {
  const cfg = validateConfig(m.cfg);
  const specs = trainableTensors(cfg, m.trainableSet, m.lora);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const s of specs) {
    const data = m.weights.get(s.name);
    if (!data) throw new ModelCheckpointError(`saveModelCheckpoint: trainable tensor ${s.name} is missing`);
    if (data.length !== s.shape.reduce((a, b) => a * b, 1)) throw new ModelCheckpointError(`saveModelCheckpoint: ${s.name} has ${data.length} values, expected [${s.shape.join(',')}]`);
    tensors.set(s.name, { shape: s.shape, data });
  }
  if (m.prototypes) {
    const E = cfg.depth, C = cfg.classes, D = cfg.dim;
    if (m.prototypes.means.length !== E * C * D || m.prototypes.counts.length !== E * C) throw new ModelCheckpointError('saveModelCheckpoint: prototypes must be [E, C, D] and counts [E, C]');
    tensors.set(PROTOTYPES_TENSOR, { shape: [E, C, D], data: m.prototypes.means });
    tensors.set(PROTOTYPE_COUNTS_TENSOR, { shape: [E, C], data: m.prototypes.counts });
  }
  const metadata = {
    kind: MODEL_CHECKPOINT_KIND,
    format: MODEL_CHECKPOINT_FORMAT,
    backbone: m.backbone,
    config: cfg as unknown as JsonValue,
    lora: (m.lora ?? null) as unknown as JsonValue,
    trainableSet: m.trainableSet,
    version: m.version,
    round: m.round,
    source: m.source,
    ...(m.labels ? { labels: checkLabels(m.labels, cfg.classes, 'saveModelCheckpoint') } : {}),
    ...(m.info ? { info: m.info } : {}),
  } satisfies Record<string, JsonValue>;
  await saveCheckpoint(path, tensors, metadata);
}

/**
 * Read and validate a model checkpoint: the generic checks (checksum, layout), then the metadata schema,
 * (a federation state checkpoint, `kind: "federation"`, is read through its global model, see fromFederation),
 * every trainable tensor's presence and shape, finite values, and the prototype tensors when present.
 * @throws CheckpointError (file-level) or ModelCheckpointError (content-level).
 */
export async function loadModelCheckpoint(path: string, opts: LoadCheckpointOptions = {}): Promise<ModelCheckpoint> {
  const ck = await loadCheckpoint(path, { ...opts, copy: true });
  const md = ck.metadata as { kind?: unknown } | null;
  if (md && typeof md === 'object' && md.kind === 'federation') return fromFederation(path, ck, opts.loraAlpha ?? DEFAULT_LORA.alpha, opts.modelsDir);
  const parsed = MetadataSchema.safeParse(ck.metadata);
  if (!parsed.success) {
    throw new ModelCheckpointError(`${path} is not an fmfl model checkpoint (${parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}); make one with \`npm run finetune -- --save <file>\``);
  }
  const mdv = parsed.data;
  // An imported graph's architecture is registered by loading its backbone (the graph is in the backbone checkpoint).
  if (mdv.config.arch?.startsWith('onnx:') && !(mdv.config.arch in ARCHITECTURES)) await loadBackboneShared(mdv.backbone, opts.modelsDir);
  const cfg = validateConfig(mdv.config);
  if (mdv.labels) checkLabels(mdv.labels, cfg.classes, path);
  const specs = trainableTensors(cfg, mdv.trainableSet, mdv.lora);
  const weights: Weights = new Map();
  for (const s of specs) {
    const t = ck.tensors.get(s.name);
    if (!t) throw new ModelCheckpointError(`${path}: trainable tensor ${s.name} is missing`);
    if (t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i])) throw new ModelCheckpointError(`${path}: ${s.name} has shape [${t.shape.join(',')}], expected [${s.shape.join(',')}]`);
    if (!t.data.every(Number.isFinite)) throw new ModelCheckpointError(`${path}: ${s.name} holds a non-finite value`);
    weights.set(s.name, t.data);
  }
  let prototypes: Prototypes | null = null;
  const p = ck.tensors.get(PROTOTYPES_TENSOR);
  const c = ck.tensors.get(PROTOTYPE_COUNTS_TENSOR);
  if (p || c) {
    const E = cfg.depth, C = cfg.classes, D = cfg.dim;
    if (!p || !c || p.data.length !== E * C * D || c.data.length !== E * C) throw new ModelCheckpointError(`${path}: prototypes must be [${E},${C},${D}] with counts [${E},${C}]`);
    if (!p.data.every(Number.isFinite) || !c.data.every((x) => Number.isFinite(x) && x >= 0)) throw new ModelCheckpointError(`${path}: prototypes hold non-finite values or negative counts`);
    prototypes = { means: p.data, counts: c.data };
  }
  return {
    backbone: mdv.backbone, cfg, lora: mdv.lora, trainableSet: mdv.trainableSet, version: mdv.version, round: mdv.round, source: mdv.source,
    weights, prototypes, labels: mdv.labels, info: mdv.info as Record<string, JsonValue> | undefined,
  };
}

function checkLabels(labels: string[], classes: number, where: string): string[] {
  if (labels.length !== classes) throw new ModelCheckpointError(`${where}: ${labels.length} class names for ${classes} classes`);
  return labels;
}

/**
 * Read the global model out of a federation state checkpoint (`<state-dir>/federation.fmfl`, written by
 * src/round every round): tensors `global/<name>`, prototype sums `proto/<exit>` with counts in the metadata.
 * The backbone is the default one; LoRA rank and targets are read from the tensor shapes and names, alpha is
 * assumed (see {@link LoadCheckpointOptions.loraAlpha}). Version: `fed-r<round>-<8 hex of the state hash>`.
 */
async function fromFederation(path: string, ck: Checkpoint, loraAlpha: number, modelsDir?: string): Promise<ModelCheckpoint> {
  const meta = ck.metadata as { version?: unknown; hash?: unknown; prototypeCounts?: unknown; backbone?: unknown; loraAlpha?: unknown; labels?: unknown };
  // Federation checkpoints record their backbone and LoRA alpha; files written before they did used the
  // reference backbone.
  const backbone = typeof meta.backbone === 'string' ? meta.backbone : REFERENCE_BACKBONE;
  if (typeof meta.loraAlpha === 'number' && meta.loraAlpha > 0) loraAlpha = meta.loraAlpha;
  const bb = await loadBackbone(backbone, modelsDir);
  // The federation's label set sizes the exit heads (checkpoints written before 2026-12: the backbone's 10).
  const labels = Array.isArray(meta.labels) && meta.labels.length > 0 && meta.labels.every((l) => typeof l === 'string') ? (meta.labels as string[]) : undefined;
  const cfg = labels ? validateConfig({ ...bb.cfg, classes: labels.length }) : bb.cfg;
  const weights: Weights = new Map();
  for (const [k, t] of ck.tensors) if (k.startsWith('global/')) weights.set(k.slice('global/'.length), t.data);
  const a0 = [...weights.keys()].find((k) => k.endsWith('.lora_a'));
  let lora: LoraConfig | null = null;
  if (a0) {
    const targets = LORA_TARGETS.filter((tg) => [...weights.keys()].some((k) => k.startsWith('blocks.0.') && k.endsWith(`.${tg}.lora_a`)));
    // The federation stores tensors flat: rank = length / fan-in (an imported graph's site; else mlp for fc2, dim).
    const site = importedGraphOf(cfg)?.lora.find((s) => `${s.prefix}.lora_a` === a0);
    const rank = weights.get(a0)!.length / (site ? site.in : a0.includes('.fc2.') ? cfg.mlp : cfg.dim);
    if (!Number.isInteger(rank) || rank < 1) throw new ModelCheckpointError(`${path}: cannot infer the LoRA rank from ${a0}`);
    // An imported graph's LoRA sites are fixed at import; its config's targets are unused.
    lora = { rank, alpha: loraAlpha, targets: (targets.length ? targets : ['q']) as LoraTarget[] };
  }
  const trainableSet: TrainableSet = lora ? 'lora+heads' : 'heads';
  for (const s of trainableTensors(cfg, trainableSet, lora)) {
    const w = weights.get(s.name);
    if (!w || w.length !== s.shape.reduce((a, b) => a * b, 1)) throw new ModelCheckpointError(`${path}: federation state lacks ${s.name} (or it is misshapen)`);
    if (!w.every(Number.isFinite)) throw new ModelCheckpointError(`${path}: ${s.name} holds a non-finite value`);
  }
  const E = cfg.depth, C = cfg.classes, D = cfg.dim;
  let prototypes: Prototypes | null = null;
  if (Array.isArray(meta.prototypeCounts) && meta.prototypeCounts.length > 0) {
    const sums = new Float64Array(E * C * D);
    const counts = new Float64Array(E * C);
    for (const p of meta.prototypeCounts as { exit: number; dim: number; counts: number[] }[]) {
      const t = ck.tensors.get(`proto/${p.exit}`);
      if (!t || p.dim !== D || !(p.exit >= 0 && p.exit < E) || p.counts.length !== C || t.data.length !== C * D) continue;
      for (let c = 0; c < C; c++) counts[p.exit * C + c] = p.counts[c];
      sums.set(t.data, p.exit * C * D);
    }
    prototypes = prototypesFromStats({ exits: E, classes: C, dim: D, sums, counts });
  }
  const round = Number.isSafeInteger(meta.version) ? (meta.version as number) : 0;
  const hash = typeof meta.hash === 'string' ? meta.hash.slice(0, 8) : 'unknown';
  return { backbone, cfg, lora, trainableSet, version: `fed-r${round}-${hash}`, round, source: 'federated', weights, prototypes, labels };
}

/** Prototype means from summed statistics (Trainer.prototypeStats): mean = sum / count, 0 where count is 0. */
export function prototypesFromStats(st: { exits: number; classes: number; dim: number; sums: ArrayLike<number>; counts: ArrayLike<number> }): Prototypes {
  const { exits: E, classes: C, dim: D } = st;
  const means = new Float32Array(E * C * D);
  const counts = new Float32Array(E * C);
  for (let ec = 0; ec < E * C; ec++) {
    const n = st.counts[ec];
    counts[ec] = n;
    if (n > 0) for (let k = 0; k < D; k++) means[ec * D + k] = st.sums[ec * D + k] / n;
  }
  return { means, counts };
}
