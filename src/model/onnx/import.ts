/**
 * `import-model`: an exported ONNX model → an fmfl backbone (frozen initializers + fresh exit heads in the
 * checkpoint format, the graph in its metadata, a manifest with tensor names, shapes, checksum, input spec,
 * labels and the source file's SHA-256). Before saving, the imported graph's forward is checked against
 * onnxruntime's run of the original file on a seeded batch.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';
import { Session } from '../../runtime/index.ts';
import { Rng } from '../../util/rng.ts';
import type { InputSpec } from '../../data/index.ts';
import { MODELS_DIR, saveBackbone, type BackboneManifest } from '../backbone.ts';
import { initWeights, type Weights } from '../vit.ts';
import { importedConfig, registerImportedGraph, runOriginal } from './architecture.ts';
import { IMPORTED_GRAPH_FORMAT, type ConstValue, type ExitSite, type ImportedGraph } from './ir.ts';
import { OnnxImportError, readOnnx, type ParsedOnnx } from './read.ts';
import { fuseGelu } from './fuse.ts';
import { fuseAttention } from './fuse-attention.ts';
import { fuseGeluLinear } from './fuse-gelu-linear.ts';
import { fuseLayerNormLinear } from './fuse-layernorm-linear.ts';
import { foldBatchNorm } from './fold-batchnorm.ts';
import { blockFamilies, checkSegments, chooseExits, keepHead, loraCandidates, pickLoraSites, probeShapes, type LoraCandidate } from './structure.ts';
import { architectureOf } from '../architecture.ts';
import type { JsonValue } from '../checkpoint.ts';

export interface ImportOptions {
  /** Backbone name (file names in the models folder). */
  name: string;
  /** Regex over MatMul/Gemm node names and weight names picking the LoRA sites (none: heads / all only). */
  loraTargets?: string;
  /** `auto` (repeated blocks' outputs) or exit tensor names. Default `auto`. */
  exits?: 'auto' | string[];
  /** Keep the model's own classifier as the last exit (its class count must equal the labels'). */
  keepHead?: boolean;
  /** Class names of the exit heads (default `0`..`9`); a federation resizes heads to its own label set. */
  labels?: string[];
  /** Per-channel normalisation the model was trained with (default mean 0.5, std 0.5). */
  mean?: number[];
  std?: number[];
  /** Fixes symbolic height/width. */
  inputSize?: number;
  /** Seed of the fresh exit heads and of the check batch (default 1). */
  seed?: number;
  /** Maximum |fmfl − onnxruntime| accepted on the check batch (default 1e-4). */
  tolerance?: number;
  /** Models folder (default the project's models/). */
  dir?: string;
}

export interface ImportReport {
  name: string;
  arch: string;
  sourceSha256: string;
  onnxNodes: number;
  /** Nodes folded to constants at batch 1. */
  foldedNodes: number;
  weights: number;
  params: number;
  lora: { node: string; weight: string; prefix: string; shape: [number, number] }[];
  exits: ExitSite[];
  dim: number;
  /** Max |imported − onnxruntime(original)| over the check batch's outputs. */
  forwardMaxAbsDiff: number;
  manifest: BackboneManifest;
}

/** fmfl tensor names for ONNX weight names (the graph builder's name rules; no clash with exit heads). */
function weightNames(names: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  const used = new Set<string>();
  for (const n of names) {
    let s = n.replace(/[^A-Za-z0-9_.:/-]/g, '_') || 'w';
    if (s.startsWith('exits.') || s === 'images') s = `onnx.${s}`;
    let k = s;
    for (let i = 2; used.has(k); i++) k = `${s}_${i}`;
    used.add(k);
    out.set(n, k);
  }
  return out;
}

/** The graph part of an import (no LoRA sites or exits yet), with its weights under fmfl names. */
function baseGraph(p: ParsedOnnx): { ir: ImportedGraph; weights: Weights } {
  const bn = foldBatchNorm(p.nodes, p.weights, p.consts, p.outputs);
  const pw = bn.weights;
  const weightNamesSet = new Set(pw.keys());
  const fused = fuseGeluLinear(fuseAttention(fuseGelu(bn.nodes, p.consts, p.outputs), p.consts, p.outputs), p.consts, p.outputs, weightNamesSet);
  const nodes = fuseLayerNormLinear(fused, p.consts, p.outputs, weightNamesSet);
  const referenced = new Set(nodes.flatMap((n) => n.inputs));
  const wNames = weightNames([...pw.keys()].filter((k) => referenced.has(k)));
  const consts: Record<string, ConstValue> = {};
  for (const [k, v] of p.consts) if (referenced.has(k)) consts[k] = v;
  const weights: Weights = new Map();
  for (const [onnx, name] of wNames) weights.set(name, pw.get(onnx)!.data);
  const ir: ImportedGraph = {
    format: IMPORTED_GRAPH_FORMAT, opset: p.opset, input: p.input, outputs: p.outputs, nodes, consts,
    weights: [...wNames].map(([onnx, name]) => ({ name, onnx, shape: pw.get(onnx)!.shape })),
    lora: [], exits: [], dim: 0,
  };
  return { ir, weights };
}

/** What `import-model --list` prints: LoRA candidates, repeated-block families (auto exits), tensor shapes. */
export function listOnnx(bytes: Uint8Array, opts: { inputSize?: number } = {}): { lora: LoraCandidate[]; families: { pattern: string; outputs: { tensor: string; shape: readonly number[] }[] }[]; tensors: number } {
  const { ir } = baseGraph(readOnnx(bytes, opts));
  const shapes = probeShapes(ir);
  const fams = blockFamilies(ir, (v) => shapes.has(v)).map((f) => ({ pattern: f.pattern, outputs: f.outputs.map((t) => ({ tensor: t, shape: shapes.get(t)! })) }));
  return { lora: loraCandidates(ir), families: fams, tensors: shapes.size };
}

/** Parse, choose LoRA sites and exits, check segment boundaries: the imported graph and its weights. */
export function prepareImport(bytes: Uint8Array, opts: Omit<ImportOptions, 'name'> = {}): { ir: ImportedGraph; weights: Weights; foldedNodes: number; producer: string } {
  const parsed = readOnnx(bytes, { inputSize: opts.inputSize });
  const { ir, weights } = baseGraph(parsed);
  const shapes = probeShapes(ir);
  ir.lora = pickLoraSites(loraCandidates(ir), opts.loraTargets);
  const { exits, dim } = chooseExits(ir, opts.exits ?? 'auto', shapes);
  ir.exits = exits;
  ir.dim = dim;
  if (opts.keepHead) exits[exits.length - 1].kept = keepHead(ir, shapes, opts.labels?.length ?? 10);
  checkSegments(ir, shapes);
  const foldedNodes = ir.nodes.filter((n) => n.outputs.every((o) => !o || !shapes.has(o))).length;
  return { ir, weights, foldedNodes, producer: parsed.producer };
}

/** The imported graph's forward (the original outputs, in order) on a batch of images, through onnxruntime. */
export async function forwardWith(ir: ImportedGraph, weights: Weights, x: Float32Array, batch: number): Promise<Float32Array[]> {
  const { channels: C, size: S } = ir.input;
  const g = new G.Graph();
  const made = new Map<string, Tensor>();
  const shapes = new Map(ir.weights.map((w) => [w.name, w.shape]));
  const param = (name: string): Tensor => {
    let t = made.get(name);
    if (!t) made.set(name, (t = g.initializer(name, weights.get(name)!, shapes.get(name)!)));
    return t;
  };
  const images = g.input('images', [batch, C, S, S]);
  runOriginal(ir, images, param).forEach((t, i) => g.output(t, `out${i}`));
  const mine = await Session.create(G.exportOnnx(g, { name: 'fmfl-onnx-check' }), { threads: 1 });
  try {
    const a = await mine.run({ images: { data: x, dims: [batch, C, S, S] } });
    return ir.outputs.map((_, i) => a[`out${i}`] as Float32Array);
  } finally {
    await mine.release();
  }
}

/**
 * Max |fmfl − onnxruntime| between the imported graph's forward (original outputs) and onnxruntime's run of
 * the original file, on a seeded batch of uniform [-1, 1] images.
 */
export async function forwardAgreement(ir: ImportedGraph, weights: Weights, original: Uint8Array, o: { batch?: number; seed?: number } = {}): Promise<number> {
  const batch = o.batch ?? 2;
  const { channels: C, size: S } = ir.input;
  const rng = new Rng(o.seed ?? 1);
  const x = Float32Array.from({ length: batch * C * S * S }, () => rng.uniform(-1, 1));
  const a = await forwardWith(ir, weights, x, batch);
  const ref = await Session.create(original, { threads: 1 });
  try {
    const b = await ref.run({ [ir.input.name]: { data: x, dims: [batch, C, S, S] } });
    let max = 0;
    ir.outputs.forEach((name, i) => {
      const p = a[i];
      const q = b[name] as Float32Array;
      if (p.length !== q.length) throw new OnnxImportError('mismatch', `output ${name}: fmfl computes ${p.length} values, onnxruntime ${q.length}`);
      for (let k = 0; k < p.length; k++) max = Math.max(max, Math.abs(p[k] - q[k]));
    });
    return max;
  } finally {
    await ref.release();
  }
}

/** Import an ONNX file as backbone `opts.name` (see the module comment). @throws OnnxImportError */
export async function importOnnxModel(file: string, opts: ImportOptions): Promise<ImportReport> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(opts.name)) throw new OnnxImportError('structure', `--name ${JSON.stringify(opts.name)}: use letters, digits, '.', '_' or '-' (at most 64)`);
  const bytes = new Uint8Array(await readFile(file));
  const sourceSha256 = createHash('sha256').update(bytes).digest('hex');
  const { ir, weights, foldedNodes, producer } = prepareImport(bytes, opts);
  const diff = await forwardAgreement(ir, weights, bytes, { seed: opts.seed });
  const tol = opts.tolerance ?? 1e-4;
  if (!(diff <= tol)) throw new OnnxImportError('mismatch', `the imported forward differs from onnxruntime's run of ${basename(file)} by ${diff} (> ${tol}); please report the model (its ops: ${[...new Set(ir.nodes.map((n) => n.op))].join(', ')})`);
  const labels = opts.labels ?? Array.from({ length: 10 }, (_, i) => String(i));
  const C = ir.input.channels;
  if (C !== 1 && C !== 3) throw new OnnxImportError('structure', `the model takes ${C} channels; fmfl's data sources feed 1 (greyscale) or 3 (RGB)`);
  const input: InputSpec = { size: ir.input.size, channels: C, mean: opts.mean ?? Array(C).fill(0.5), std: opts.std ?? Array(C).fill(0.5) };
  const arch = registerImportedGraph(ir);
  const cfg = importedConfig(ir, labels.length);
  const heads = initWeights(architectureOf(cfg).exitTensors(cfg), opts.seed ?? 1);
  for (const [k, v] of heads) weights.set(k, v);
  const manifest = await saveBackbone(opts.name, cfg, weights, {
    training: { source: 'onnx-import', file: basename(file), sourceSha256, producer, loraTargets: opts.loraTargets ?? null, exits: opts.exits === undefined || opts.exits === 'auto' ? 'auto' : opts.exits, keepHead: opts.keepHead ?? false, forwardMaxAbsDiff: diff },
    testAccuracy: [],
    input,
    labels,
    graph: ir as unknown as JsonValue,
    sourceSha256,
  }, opts.dir ?? MODELS_DIR);
  return {
    name: opts.name, arch, sourceSha256, onnxNodes: ir.nodes.length, foldedNodes, weights: ir.weights.length,
    params: ir.weights.reduce((a, w) => a + w.shape.reduce((x, y) => x * y, 1), 0),
    lora: ir.lora.map((s) => ({ node: s.node, weight: s.weight, prefix: s.prefix, shape: [s.in, s.out] })),
    exits: ir.exits, dim: ir.dim, forwardMaxAbsDiff: diff, manifest,
  };
}
