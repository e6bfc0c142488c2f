/**
 * The embedded foundation model: a vit-tiny pretrained on MNIST (scripts/pretrain-backbone.ts), committed as
 * `models/vit-tiny-mnist.fmfl` (checkpoint format, src/model/checkpoint.ts) with a JSON manifest recording the
 * architecture, every tensor's name and shape, the checkpoint's SHA-256 and the per-exit test accuracy.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { atomicWriteFile } from '../util/atomic.ts';
import { FmflError } from '../util/errors.ts';
import { MNIST_CLASSES, MNIST_INPUT, type InputSpec } from '../data/index.ts';
import { decodeCheckpoint, encodeCheckpoint, type JsonValue } from './checkpoint.ts';
import { resolveModelConfig } from './presets.ts';
import type { VitConfig, Weights } from './vit.ts';
import { architectureOf, backboneAndExitTensors } from './architecture.ts';
import { registerImportedGraph } from './onnx/architecture.ts';
import { IMPORTED_GRAPH_FORMAT, type ImportedGraph } from './onnx/ir.ts';

/** A checkpoint's `graph` metadata as an imported graph (shape-checked; its node contents are checked on build). */
function checkImportedGraph(g: unknown, name: string): ImportedGraph {
  const ok = typeof g === 'object' && g !== null && (g as ImportedGraph).format === IMPORTED_GRAPH_FORMAT &&
    ['nodes', 'weights', 'lora', 'exits', 'outputs'].every((k) => Array.isArray((g as Record<string, unknown>)[k])) &&
    typeof (g as ImportedGraph).input?.name === 'string' && Number.isInteger((g as ImportedGraph).dim);
  if (!ok) throw new BackboneError(`backbone ${name}: the checkpoint's imported graph is not in format ${IMPORTED_GRAPH_FORMAT}; re-import the model with npx fmfl-node import-model`);
  return g as ImportedGraph;
}

function importedSummary(graph: JsonValue, sourceSha256: string, cfg: VitConfig): NonNullable<BackboneManifest['imported']> {
  const g = graph as unknown as ImportedGraph;
  return { sourceSha256, arch: String(cfg.arch), nodes: g.nodes.length, lora: g.lora.map((s) => s.node), exits: g.exits.map((e) => e.tensor) };
}

/** Folder of the committed models (project root `models/`). */
export const MODELS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models');
/**
 * The product's default backbone: vit-tiny pretrained 20 epochs on MNIST (`npm run pretrain -- --epochs 20
 * --name vit-tiny-mnist-strong`). `vit-tiny-mnist` (5 epochs) is the reference recipe's backbone.
 */
export const DEFAULT_BACKBONE = 'vit-tiny-mnist-strong';
/** The reference recipe's backbone (5 epochs of MNIST pretraining). */
export const REFERENCE_BACKBONE = 'vit-tiny-mnist';

export class BackboneError extends FmflError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BACKBONE', message, options);
  }
}

export interface BackboneManifest {
  name: string;
  format: 'fmfl-backbone/1';
  config: VitConfig;
  /** File name of the checkpoint, next to the manifest. */
  checkpoint: string;
  /** SHA-256 (hex) of the checkpoint file. */
  sha256: string;
  tensors: { name: string; shape: number[] }[];
  params: number;
  /** How it was made: dataset, epochs, optimizer, seed, ... */
  training: Record<string, JsonValue>;
  /** Test accuracy per exit on the pretraining dataset's test split. */
  testAccuracy: number[];
  /**
   * The images the backbone takes: size and channels (equal to the config's) and the per-channel normalisation it
   * was pretrained with. Absent in manifests written before 2026-12: then 28x28x1, mean 0.5, std 0.5.
   */
  input?: InputSpec;
  /** The pretraining label set, in label order (absent before 2026-12: the MNIST digits). */
  labels?: string[];
  /** An imported ONNX model (src/model/onnx): the source file's SHA-256 (the graph itself is in the checkpoint). */
  imported?: { sourceSha256: string; arch: string; nodes: number; lora: string[]; exits: string[] };
}

export interface Backbone {
  manifest: BackboneManifest;
  cfg: VitConfig;
  /** The input spec (from the manifest, or the pre-2026-12 default). */
  input: InputSpec;
  /** The pretraining label set. */
  labels: readonly string[];
  /** Backbone and exit-head tensors. */
  weights: Weights;
}

export function manifestPath(name = DEFAULT_BACKBONE, dir = MODELS_DIR): string {
  return join(dir, `${name}.json`);
}

/** Load and verify a backbone (checksum, tensor names and shapes against its architecture). */
export async function loadBackbone(name = DEFAULT_BACKBONE, dir: string = MODELS_DIR): Promise<Backbone> {
  dir ??= MODELS_DIR;
  let manifest: BackboneManifest;
  try {
    manifest = JSON.parse(await readFile(manifestPath(name, dir), 'utf8')) as BackboneManifest;
  } catch (err) {
    throw new BackboneError(`cannot read the manifest of backbone ${name} in ${dir}: ${(err as Error).message}. Run \`npm run pretrain\` to create it.`, { cause: err });
  }
  if (manifest.format !== 'fmfl-backbone/1') throw new BackboneError(`backbone ${name}: unknown manifest format ${String(manifest.format)}`);
  const bytes = new Uint8Array(await readFile(join(dir, manifest.checkpoint)));
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== manifest.sha256) throw new BackboneError(`backbone ${name}: checkpoint checksum ${sha} does not match the manifest (${manifest.sha256}); the file is corrupt or was replaced`);
  const ckpt = decodeCheckpoint(bytes, { copy: true });
  const graph = (ckpt.metadata as { graph?: unknown } | null)?.graph;
  if (graph !== undefined) {
    const arch = registerImportedGraph(checkImportedGraph(graph, name));
    if (arch !== manifest.config.arch) throw new BackboneError(`backbone ${name}: the checkpoint's graph is architecture ${arch}, the manifest names ${String(manifest.config.arch)}`);
  }
  const cfg = architectureOf(manifest.config).validate(manifest.config);
  const input = checkInputSpec(manifest.input ?? MNIST_INPUT, cfg, name);
  const labels = manifest.labels ?? [...MNIST_CLASSES];
  if (!Array.isArray(labels) || labels.length !== cfg.classes || labels.some((l) => typeof l !== 'string' || l.length === 0)) {
    throw new BackboneError(`backbone ${name}: the manifest's labels must be ${cfg.classes} non-empty names (its exit heads' classes)`);
  }
  const weights: Weights = new Map();
  for (const s of backboneAndExitTensors(cfg)) {
    const t = ckpt.tensors.get(s.name);
    if (!t) throw new BackboneError(`backbone ${name}: tensor ${s.name} is missing`);
    if (t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i])) {
      throw new BackboneError(`backbone ${name}: tensor ${s.name} has shape [${t.shape.join(',')}], the architecture needs [${s.shape.join(',')}]`);
    }
    weights.set(s.name, t.data);
  }
  return { manifest, cfg, weights, input, labels };
}

function checkInputSpec(input: InputSpec, cfg: VitConfig, name: string): InputSpec {
  const ok = input.size === cfg.image && input.channels === cfg.channels && Array.isArray(input.mean) && Array.isArray(input.std) &&
    input.mean.length === input.channels && input.std.length === input.channels &&
    input.mean.every((m) => Number.isFinite(m)) && input.std.every((v) => Number.isFinite(v) && v > 0);
  if (!ok) throw new BackboneError(`backbone ${name}: the manifest's input spec ${JSON.stringify(input)} does not fit its ${cfg.channels}x${cfg.image}x${cfg.image} config (need size, channels and one mean and std > 0 per channel)`);
  return { size: input.size, channels: input.channels, mean: [...input.mean], std: [...input.std] };
}

/**
 * Digest of what members of a federation must agree on before exchanging anything: the backbone's weights
 * (its checkpoint SHA-256), the input spec (size, channels, normalisation), the federation's label set (names, in
 * order) and the shape of the update (the update manifest digest). Hex, 16 characters. Two nodes with different
 * digests refuse each other at join (membership) with reason MODEL_MISMATCH.
 */
export function federationModelDigest(o: { backboneSha256: string; input: InputSpec; labels: readonly string[]; updateManifestDigest: Uint8Array }): string {
  const canon = JSON.stringify({
    b: o.backboneSha256,
    i: [o.input.size, o.input.channels, [...o.input.mean], [...o.input.std]],
    l: [...o.labels],
    u: Buffer.from(o.updateManifestDigest).toString('hex'),
  });
  return createHash('sha256').update(canon).digest('hex').slice(0, 16);
}

const loaded = new Map<string, { sha256: string; backbone: Promise<Backbone> }>();

/**
 * `loadBackbone`, loaded and verified once per process: later calls whose manifest still names the same
 * checkpoint digest get the same (read-only) weights, so in-process nodes hold one copy of the frozen backbone.
 */
export async function loadBackboneShared(name = DEFAULT_BACKBONE, dir: string = MODELS_DIR): Promise<Backbone> {
  dir ??= MODELS_DIR;
  const path = resolve(manifestPath(name, dir));
  let sha = '';
  try {
    sha = String((JSON.parse(await readFile(path, 'utf8')) as Partial<BackboneManifest>).sha256 ?? '');
  } catch {
    return loadBackbone(name, dir); // let it report the problem
  }
  const hit = loaded.get(path);
  if (hit && hit.sha256 === sha) return hit.backbone;
  const backbone = loadBackbone(name, dir);
  loaded.set(path, { sha256: sha, backbone });
  backbone.catch(() => loaded.delete(path));
  return backbone;
}

/** Write a backbone checkpoint and its manifest (atomically). */
export async function saveBackbone(
  name: string,
  cfg: VitConfig,
  weights: Weights,
  info: { training: Record<string, JsonValue>; testAccuracy: number[]; input?: InputSpec; labels?: readonly string[]; graph?: JsonValue; sourceSha256?: string },
  dir = MODELS_DIR,
): Promise<BackboneManifest> {
  const input = checkInputSpec(info.input ?? { size: cfg.image, channels: cfg.channels as 1 | 3, mean: Array(cfg.channels).fill(0.5), std: Array(cfg.channels).fill(0.5) }, cfg, name);
  const labels = info.labels ? [...info.labels] : Array.from({ length: cfg.classes }, (_, i) => String(i));
  if (labels.length !== cfg.classes) throw new BackboneError(`saveBackbone: ${labels.length} labels for ${cfg.classes} classes`);
  const specs = backboneAndExitTensors(cfg);
  const tensors = new Map(specs.map((s) => {
    const data = weights.get(s.name);
    if (!data) throw new BackboneError(`saveBackbone: tensor ${s.name} is missing`);
    return [s.name, { shape: s.shape, data }] as const;
  }));
  const bytes = encodeCheckpoint(tensors, { kind: 'backbone', name, config: cfg as unknown as JsonValue, ...(info.graph ? { graph: info.graph } : {}) });
  const file = `${name}.fmfl`;
  await atomicWriteFile(join(dir, file), bytes, 0o644);
  const manifest: BackboneManifest = {
    name,
    format: 'fmfl-backbone/1',
    config: cfg,
    checkpoint: file,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    tensors: specs.map((s) => ({ name: s.name, shape: s.shape })),
    params: specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0),
    training: info.training,
    testAccuracy: info.testAccuracy,
    input,
    labels,
    ...(info.graph && info.sourceSha256 ? { imported: importedSummary(info.graph, info.sourceSha256, cfg) } : {}),
  };
  await atomicWriteFile(manifestPath(name, dir), JSON.stringify(manifest, null, 2) + '\n', 0o644);
  return manifest;
}

/**
 * The backbone in `dir` built for a model preset (same architecture as `resolveModelConfig(preset)` up to the
 * class count): a name equal to the preset, or starting with `<preset>-`, first. For `--model` in finetune.
 * @throws BackboneError naming how to make one when there is none.
 */
export async function findBackboneForModel(preset: string, dir: string = MODELS_DIR): Promise<string> {
  const want = resolveModelConfig(preset);
  const names = (await readdir(dir)).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
  const fits: string[] = [];
  for (const name of names) {
    try {
      const m = JSON.parse(await readFile(manifestPath(name, dir), 'utf8')) as BackboneManifest;
      const c = m.config;
      if (m.format === 'fmfl-backbone/1' && c.image === want.image && c.channels === want.channels && c.patch === want.patch && c.dim === want.dim && c.depth === want.depth && c.heads === want.heads && c.mlp === want.mlp) fits.push(name);
    } catch {
      // Not a backbone manifest.
    }
  }
  const best = fits.find((n) => n === preset) ?? fits.find((n) => n.startsWith(`${preset}-`)) ?? fits[0];
  if (!best) throw new BackboneError(`no backbone of architecture ${preset} in ${dir}: make one with npm run pretrain -- --model ${preset} --data <folder|mnist> --name ${preset}-<data>`);
  return best;
}
