/**
 * An imported ONNX graph as one more {@link ModelArchitecture}: its initializers are the frozen backbone, LoRA
 * sits on the MatMul/Gemm nodes chosen at import, a fresh exit head (LayerNorm + Linear, as the ViT's) reads each
 * exit tensor (token 0 of a [B, n, d] sequence, the spatial mean of a [B, C, H, W] map, or a [B, d] vector), and
 * the anytime segments are the stretches of graph between consecutive exit tensors. A config names it by
 * `arch: "onnx:<16 hex of the graph's SHA-256>"`; loading the backbone registers it.
 */
import { createHash } from 'node:crypto';
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';
import { ConfigError } from '../../util/errors.ts';
import { registerArchitecture, ARCHITECTURES, type ModelArchitecture } from '../architecture.ts';
import { exitSpecs, VitConfigSchema, type ForwardOptions, type ParamSource, type ParamSpec, type VitConfig, type LoraConfig } from '../vit.ts';
import { buildContext, buildProbe, nodesFor, runNode, type BuildContext } from './build.ts';
import type { ConstValue, ImportedGraph } from './ir.ts';
import { planClsOnly, type ClsOnlyPlan } from './cls-only-last-block.ts';

/** Architecture names of imported graphs start with this. */
export const IMPORTED_ARCH_PREFIX = 'onnx:';

/** The architecture name of an imported graph: `onnx:` + 16 hex characters of the SHA-256 of its JSON. */
export function importedArchName(ir: ImportedGraph): string {
  return IMPORTED_ARCH_PREFIX + createHash('sha256').update(JSON.stringify(ir)).digest('hex').slice(0, 16);
}

const GRAPHS = new Map<string, ImportedGraph>();

/** Register an imported graph's architecture (idempotent); returns its name. */
export function registerImportedGraph(ir: ImportedGraph): string {
  const name = importedArchName(ir);
  if (!GRAPHS.has(name)) {
    GRAPHS.set(name, ir);
    registerArchitecture(importedArchitecture(name, ir));
  }
  return name;
}

/** The imported graph of a config, or null for a built-in architecture. */
export function importedGraphOf(cfg: Pick<VitConfig, 'arch'>): ImportedGraph | null {
  return cfg.arch && cfg.arch.startsWith(IMPORTED_ARCH_PREFIX) ? GRAPHS.get(cfg.arch) ?? null : null;
}

/** The config of an imported graph: input size and channels, one exit per exit site, exit width, classes. */
export function importedConfig(ir: ImportedGraph, classes: number): VitConfig {
  return VitConfigSchema.parse({ arch: importedArchName(ir), image: ir.input.size, channels: ir.input.channels, dim: ir.dim, depth: ir.exits.length, classes, patch: 1, heads: 1 });
}

/** A probe build of the whole graph (to every exit) at one batch: tensor shapes and folded constants. */
interface Probe {
  shapes: Map<string, readonly number[]>;
  consts: Map<string, ConstValue>;
  /** The last-segment rewrite of src/model/onnx/cls-only-last-block.ts per number of blocks (null: it does not fire). */
  clsOnly: Map<number, ClsOnlyPlan | null>;
}

function probeAt(ir: ImportedGraph, batch: number): Probe {
  let per = PROBES.get(ir);
  if (!per) PROBES.set(ir, (per = new Map()));
  const hit = per.get(batch);
  if (hit) return hit;
  const cx = buildProbe(ir, batch, ir.exits.map((e) => e.tensor));
  const probe: Probe = { shapes: new Map(), consts: new Map(), clsOnly: new Map() };
  for (const [k, v] of cx.env) {
    if ('c' in v) probe.consts.set(k, v.c);
    else probe.shapes.set(k, v.t.shape);
  }
  per.set(batch, probe);
  return probe;
}
const PROBES = new WeakMap<ImportedGraph, Map<number, Probe>>();

/** Per-batch constant values of the whole graph (the folded shape plumbing), for segments that start mid-graph. */
function constsAt(ir: ImportedGraph, batch: number): Map<string, ConstValue> {
  return probeAt(ir, batch).consts;
}

/**
 * The CLS-only rewrite of the last of the first `blocks` segments at `batch` (cached), or null where it does not
 * fire: disabled (`ir.clsOnly === false`), a kept classifier on that exit, or a last block it cannot take by rows.
 */
export function clsOnlyPlanOf(ir: ImportedGraph, batch: number, blocks: number): ClsOnlyPlan | null {
  const last = ir.exits[blocks - 1];
  if (ir.clsOnly === false || last.kept) return null;
  const probe = probeAt(ir, batch);
  if (probe.clsOnly.has(blocks)) return probe.clsOnly.get(blocks)!;
  const earlier = new Set(nodesFor(ir, ir.exits.slice(0, blocks - 1).map((e) => e.tensor)));
  const segment = nodesFor(ir, [last.tensor]).filter((n) => !earlier.has(n));
  const plan = planClsOnly(segment, last.tensor, probe.shapes, (v) => probe.consts.get(v) ?? ir.consts[v]);
  probe.clsOnly.set(blocks, plan);
  return plan;
}

function context(ir: ImportedGraph, x: Tensor, param: ParamSource, opts: ForwardOptions): BuildContext {
  return buildContext(ir, x.graph, param, opts.lora ?? null);
}

/**
 * Run the graph from the images up to the exit tensors 0..blocks-1; returns them. With `clsOnly` the last one is
 * its token-0 row only, [B, 1, d], where src/model/onnx/cls-only-last-block.ts fires (the training forward, whose
 * exit head reads nothing else); the full tensor otherwise.
 */
export function runToExits(ir: ImportedGraph, images: Tensor, param: ParamSource, opts: ForwardOptions, blocks: number, clsOnly = false): Tensor[] {
  const cx = context(ir, images, param, opts);
  cx.env.set(ir.input.name, { t: images });
  const targets = ir.exits.slice(0, blocks).map((e) => e.tensor);
  const plan = clsOnly ? clsOnlyPlanOf(ir, images.shape[0], blocks) : null;
  if (plan) {
    // The folded shape plumbing from the full-size probe (a Shape node must not read a row), then the rewrite.
    for (const [k, c] of probeAt(ir, images.shape[0]).consts) cx.env.set(k, { c });
    for (const [k, c] of plan.consts) cx.env.set(k, { c });
    for (const n of nodesFor(ir, targets.slice(0, -1))) runNode(cx, n);
    for (const n of plan.nodes) runNode(cx, n);
  } else for (const n of nodesFor(ir, targets)) runNode(cx, n);
  return targets.map((t) => tensorOf(cx, t));
}

/** Run the whole original graph (its own outputs): the importer's check against onnxruntime. */
export function runOriginal(ir: ImportedGraph, images: Tensor, param: ParamSource): Tensor[] {
  const cx = context(ir, images, param, {});
  cx.env.set(ir.input.name, { t: images });
  for (const n of nodesFor(ir, ir.outputs)) runNode(cx, n);
  return ir.outputs.map((t) => tensorOf(cx, t));
}

function tensorOf(cx: BuildContext, name: string): Tensor {
  const v = cx.env.get(name);
  if (!v || !('t' in v)) throw new ConfigError(`imported graph: tensor ${name} is a constant, not a tensor of the model`);
  return v.t;
}

/** Segment i of the graph: from the input (i = 0) or exit tensor i-1 to exit tensor i. */
export function runSegment(ir: ImportedGraph, x: Tensor, i: number, param: ParamSource, opts: ForwardOptions): Tensor {
  const cx = context(ir, x, param, opts);
  const consts = constsAt(ir, x.shape[0]);
  for (const [k, c] of consts) cx.env.set(k, { c });
  const from = i === 0 ? ir.input.name : ir.exits[i - 1].tensor;
  cx.env.set(from, { t: x });
  const stops = new Set([from, ...consts.keys()]);
  for (const n of nodesFor(ir, [ir.exits[i].tensor], stops)) runNode(cx, n);
  return tensorOf(cx, ir.exits[i].tensor);
}

/** The kept classifier of exit i (`--keep-head`): the graph from the exit tensor to the model's output. */
function keptHead(ir: ImportedGraph, x: Tensor, i: number, param: ParamSource, opts: ForwardOptions): { logits: Tensor; embedding: Tensor } {
  const kept = ir.exits[i].kept!;
  const cx = context(ir, x, param, opts);
  const consts = constsAt(ir, x.shape[0]);
  for (const [k, c] of consts) cx.env.set(k, { c });
  cx.env.set(ir.exits[i].tensor, { t: x });
  for (const n of nodesFor(ir, [kept.logits, kept.features], new Set([ir.exits[i].tensor, ...consts.keys()]))) runNode(cx, n);
  return { logits: tensorOf(cx, kept.logits), embedding: tensorOf(cx, kept.features) };
}

/** Exit head i on an exit tensor: pick token 0 / pool / take the vector, then LayerNorm and Linear (or the kept classifier). */
function exitHead(ir: ImportedGraph, cfg: VitConfig, x: Tensor, i: number, param: ParamSource, opts: ForwardOptions = {}): { logits: Tensor; embedding: Tensor } {
  if (ir.exits[i].kept) return keptHead(ir, x, i, param, opts);
  const B = x.shape[0];
  let z: Tensor;
  if (x.rank === 3) z = G.reshape(x.shape[1] === 1 ? x : G.slice(x, [0], [1], [1]), [B, x.shape[2]]);
  else if (x.rank === 4) z = G.reshape(G.reduceMean(x, [2, 3], false), [B, x.shape[1]]);
  else if (x.rank === 2) z = x;
  else throw new ConfigError(`imported graph: exit ${i} reads a rank-${x.rank} tensor; exits read [B, n, d], [B, C, H, W] or [B, d]`);
  const embedding = G.layerNormC(z, param(`exits.${i}.norm.weight`), param(`exits.${i}.norm.bias`), cfg.eps);
  return { embedding, logits: G.add(G.matmul(embedding, param(`exits.${i}.head.weight`)), param(`exits.${i}.head.bias`)) };
}

function loraSpecs(ir: ImportedGraph, lora: LoraConfig): ParamSpec[] {
  return ir.lora.flatMap((s) => [
    { name: `${s.prefix}.lora_a`, shape: [s.in, lora.rank], init: { kind: 'uniform', bound: 1 / Math.sqrt(s.in) }, group: 'lora' } as ParamSpec,
    { name: `${s.prefix}.lora_b`, shape: [lora.rank, s.out], init: { kind: 'const', value: 0 }, group: 'lora' } as ParamSpec,
  ]);
}

function importedArchitecture(name: string, ir: ImportedGraph): ModelArchitecture {
  const E = ir.exits.length;
  const kept = ir.exits[E - 1].kept;
  return {
    name,
    validate(cfg) {
      const parsed = VitConfigSchema.safeParse(cfg);
      if (!parsed.success) throw new ConfigError(`invalid model config: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
      const c = parsed.data;
      if (c.arch !== name) throw new ConfigError(`config names architecture ${c.arch}, not ${name}`);
      if (c.image !== ir.input.size || c.channels !== ir.input.channels || c.depth !== E || c.dim !== ir.dim) {
        throw new ConfigError(`imported model ${name}: the config must keep image ${ir.input.size}, channels ${ir.input.channels}, depth ${E} (exits) and dim ${ir.dim}; only classes may change`);
      }
      if (kept && c.classes !== kept.classes) throw new ConfigError(`imported model ${name} keeps its own classifier (${kept.classes} classes) as the last exit; it cannot be resized to ${c.classes} classes (re-import without --keep-head)`);
      return c;
    },
    backboneTensors: () => ir.weights.map((w) => ({ name: w.name, shape: [...w.shape], init: { kind: 'const', value: 0 }, group: 'backbone' }) as ParamSpec),
    exitTensors: (cfg) => exitSpecs({ ...cfg, depth: E, dim: ir.dim }).filter((s) => !kept || !s.name.startsWith(`exits.${E - 1}.`)),
    loraTensors: (_cfg, lora) => loraSpecs(ir, lora),
    exits: () => E,
    forward(cfg, images, param, opts = {}) {
      const blocks = opts.blocks ?? E;
      if (!Number.isInteger(blocks) || blocks < 1 || blocks > E) throw new ConfigError(`blocks must be in 1..${E}`);
      const xs = runToExits(ir, images, param, opts, blocks, true);
      const heads = xs.map((x, i) => exitHead(ir, cfg, x, i, param, opts));
      return { logits: heads.map((h) => h.logits), embeddings: heads.map((h) => h.embedding) };
    },
    embed: (_cfg, images) => images,
    block: (_cfg, x, i, param, opts) => runSegment(ir, x, i, param, opts),
    exit: (cfg, x, i, param, opts) => exitHead(ir, cfg, x, i, param, opts),
    hiddenShape: (_cfg, batch, after = 0) => [batch, ...ir.exits[Math.min(Math.max(after, 0), E - 1)].shape],
  };
}

/** Whether a name is a registered architecture (built-in or imported). */
export function isKnownArchitecture(name: string): boolean {
  return name in ARCHITECTURES;
}
