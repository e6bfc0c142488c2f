/**
 * The model interface every consumer goes through (trainer, training / inference / segment graphs, anytime
 * inference, checkpoints, backbones, federation, recipes): which tensors a model has, how its forward pass, its
 * blocks and its exits are built as fmfl graphs, and the hidden state handed between anytime segments. An
 * architecture is one {@link ModelArchitecture} record in {@link ARCHITECTURES}; a config picks it by its `arch`
 * field (default `vit`), a size of it is one preset (src/model/presets.ts).
 */
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import { ConfigError } from '../util/errors.ts';
import {
  backboneSpecs, exitSpecs, loraSpecs, numPatches, validateVitConfig, vitBlock, vitEmbed, vitExit, vitForward,
  type ForwardOptions, type ForwardResult, type LoraConfig, type ParamSource, type ParamSpec, type TrainableSet, type VitConfig,
} from './vit.ts';

/** One model family. Every function is pure (it builds graph nodes or lists tensors) and deterministic. */
export interface ModelArchitecture {
  readonly name: string;
  /** Check a config of this family (shapes that must divide, ...); returns it with defaults filled. */
  validate(cfg: VitConfig): VitConfig;
  /** Frozen-by-default backbone tensors, in a fixed order (the checkpoint and manifest order). */
  backboneTensors(cfg: VitConfig): ParamSpec[];
  /** Exit-head tensors: one head per exit, sized to the config's class count. */
  exitTensors(cfg: VitConfig): ParamSpec[];
  /** LoRA factors for the configured targets. */
  loraTensors(cfg: VitConfig, lora: LoraConfig): ParamSpec[];
  /** Number of exits (one after each block). */
  exits(cfg: VitConfig): number;
  /** Forward pass on images [B, C, H, W] up to `opts.blocks` blocks: logits and embeddings per exit. */
  forward(cfg: VitConfig, images: Tensor, param: ParamSource, opts?: ForwardOptions): ForwardResult;
  /** Segment pieces for anytime inference: the stem, block i (with `last` when only its exit reads it), exit i. */
  embed(cfg: VitConfig, images: Tensor, param: ParamSource, opts?: ForwardOptions): Tensor;
  block(cfg: VitConfig, x: Tensor, i: number, param: ParamSource, opts: ForwardOptions, last: boolean): Tensor;
  exit(cfg: VitConfig, x: Tensor, i: number, param: ParamSource, opts?: ForwardOptions): { logits: Tensor; embedding: Tensor };
  /** Shape of the hidden state between segments at `batch`: the output of block `after` (default 0). */
  hiddenShape(cfg: VitConfig, batch: number, after?: number): number[];
}

/** The Vision Transformer with an exit after every block (src/model/vit.ts). */
export const VIT_ARCHITECTURE: ModelArchitecture = {
  name: 'vit',
  validate: validateVitConfig,
  backboneTensors: backboneSpecs,
  exitTensors: exitSpecs,
  loraTensors: loraSpecs,
  exits: (cfg) => cfg.depth,
  forward: vitForward,
  embed: vitEmbed,
  block: vitBlock,
  exit: vitExit,
  hiddenShape: (cfg, batch) => [batch, numPatches(cfg) + 1, cfg.dim],
};

const REGISTRY: Record<string, ModelArchitecture> = { vit: VIT_ARCHITECTURE };

/** The registry: architecture name → record (built-in ones, plus imported graphs once their backbone is loaded). */
export const ARCHITECTURES: Readonly<Record<string, ModelArchitecture>> = REGISTRY;

/** Add an architecture (an imported ONNX graph, src/model/onnx). A name is registered once. */
export function registerArchitecture(a: ModelArchitecture): void {
  const had = REGISTRY[a.name];
  if (had && had !== a) throw new ConfigError(`model architecture '${a.name}' is already registered`);
  REGISTRY[a.name] = a;
}

/** The architecture of a config (its `arch`, default `vit`). @throws ConfigError naming the known ones. */
export function architectureOf(cfg: Pick<VitConfig, 'arch'>): ModelArchitecture {
  const name = cfg.arch ?? 'vit';
  const a = ARCHITECTURES[name];
  if (!a && name.startsWith('onnx:')) throw new ConfigError(`model architecture '${name}' is an imported ONNX graph that is not loaded: load its backbone first (the backbone named in the checkpoint or --backbone; import one with \`npx fmfl-node import-model\`)`);
  if (!a) throw new ConfigError(`unknown model architecture '${name}': known ${Object.keys(ARCHITECTURES).join(', ')}`);
  return a;
}

/** Every tensor of the model: backbone, exits, and LoRA when configured. */
export function modelTensors(cfg: VitConfig, lora: LoraConfig | null): ParamSpec[] {
  const a = architectureOf(cfg);
  return [...a.backboneTensors(cfg), ...a.exitTensors(cfg), ...(lora ? a.loraTensors(cfg, lora) : [])];
}

/** The tensors that train under a trainable set: exit heads (`heads`), LoRA + heads, or every tensor (`all`). */
export function trainableTensors(cfg: VitConfig, set: TrainableSet, lora: LoraConfig | null): ParamSpec[] {
  const a = architectureOf(cfg);
  switch (set) {
    case 'heads':
      return a.exitTensors(cfg);
    case 'lora+heads':
      if (!lora) throw new ConfigError('trainable set lora+heads needs a LoRA config');
      return [...a.loraTensors(cfg, lora), ...a.exitTensors(cfg)];
    case 'all':
      return [...a.backboneTensors(cfg), ...a.exitTensors(cfg)];
  }
}

/** The backbone and exit tensors (what a backbone checkpoint holds). */
export function backboneAndExitTensors(cfg: VitConfig): ParamSpec[] {
  const a = architectureOf(cfg);
  return [...a.backboneTensors(cfg), ...a.exitTensors(cfg)];
}

/** Exit-head tensor names (fresh heads are initialised from the federation's model seed). */
export function exitTensorNames(cfg: VitConfig): Set<string> {
  return new Set(architectureOf(cfg).exitTensors(cfg).map((s) => s.name));
}

/**
 * The tensors the forward pass of the first `blocks` blocks reads (depth budgets, DepthFL / InclusiveFL): found by
 * building that forward pass once on a throwaway graph and recording every tensor it asks for, so it holds for any
 * architecture. With `blocks` = depth it is every tensor of the model.
 */
export function tensorsUpToDepth(cfg: VitConfig, lora: LoraConfig | null, blocks: number): Set<string> {
  if (!Number.isInteger(blocks) || blocks < 1 || blocks > cfg.depth) throw new ConfigError(`max depth ${blocks} must be in 1..${cfg.depth}`);
  const shapes = new Map(modelTensors(cfg, lora).map((s) => [s.name, s.shape]));
  const g = new G.Graph();
  const used = new Set<string>();
  const made = new Map<string, Tensor>();
  const param = (name: string): Tensor => {
    let t = made.get(name);
    if (t) return t;
    const shape = shapes.get(name);
    if (!shape) throw new ConfigError(`unknown model tensor ${name}`);
    t = g.input(name, shape);
    made.set(name, t);
    used.add(name);
    return t;
  };
  const images = g.input('images', [1, cfg.channels, cfg.image, cfg.image]);
  architectureOf(cfg).forward(cfg, images, param, { lora, blocks });
  return used;
}
