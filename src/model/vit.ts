/**
 * A Vision Transformer for 28x28x1 images with an exit head after every block, LoRA on chosen projections,
 * built as an fmfl graph (src/graph) so that the same description yields the inference graph and the
 * training graph (forward + loss + gradients of the trainable tensors).
 *
 * Weight layout: every Linear stores W as [in, out] (y = x W + b). LoRA adds (alpha / r) * x A B with
 * A [in, r] (Kaiming-uniform) and B [r, out] (zero), so the low-rank update is Delta W = (alpha / r) A B.
 */
import { z } from 'zod';
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import { ConfigError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';

/** Projections LoRA can attach to. */
export const LORA_TARGETS = ['q', 'k', 'v', 'proj', 'fc1', 'fc2'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

export const VitConfigSchema = z.object({
  /** Model family (src/model/architecture.ts): `vit` (absent: `vit`) or an imported graph, `onnx:<16 hex>`. */
  arch: z.string().regex(/^(vit|onnx:[0-9a-f]{16})$/).optional(),
  image: z.number().int().min(4).max(256).default(28),
  channels: z.number().int().min(1).max(4).default(1),
  patch: z.number().int().min(1).max(32).default(4),
  dim: z.number().int().min(4).max(1024).default(64),
  depth: z.number().int().min(1).max(24).default(4),
  heads: z.number().int().min(1).max(32).default(4),
  mlp: z.number().int().min(4).max(4096).default(128),
  classes: z.number().int().min(2).max(1000).default(10),
  /** LayerNorm epsilon (PyTorch's default). */
  eps: z.number().positive().max(0.1).default(1e-5),
});
export type VitConfig = z.infer<typeof VitConfigSchema>;

/** `vit-tiny`: patch 4 (49 patches), dim 64, depth 4, 4 heads, MLP 128, 10 classes. */
export const VIT_TINY: VitConfig = VitConfigSchema.parse({});

export const LoraConfigSchema = z.object({
  rank: z.number().int().min(1).max(256),
  alpha: z.number().positive().max(4096),
  targets: z.array(z.enum(LORA_TARGETS)).min(1),
});
export type LoraConfig = z.infer<typeof LoraConfigSchema>;

/** LoRA r = 8, alpha = 16 on q and v (Hu et al. 2021's default placement). */
export const DEFAULT_LORA: LoraConfig = { rank: 8, alpha: 16, targets: ['q', 'v'] };

/** Which tensors train: LoRA + exit heads (default), exit heads only (linear probe), or every weight. */
export const TRAINABLE_SETS = ['lora+heads', 'heads', 'all'] as const;
export type TrainableSet = (typeof TRAINABLE_SETS)[number];

export type InitKind = { kind: 'uniform'; bound: number } | { kind: 'const'; value: number } | { kind: 'trunc-normal'; std: number };

export interface ParamSpec {
  name: string;
  shape: number[];
  init: InitKind;
  /** What the tensor belongs to. */
  group: 'backbone' | 'exit' | 'lora';
}

export function validateVitConfig(cfg: VitConfig): VitConfig {
  const parsed = VitConfigSchema.safeParse(cfg);
  if (!parsed.success) throw new ConfigError(`invalid model config: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const c = parsed.data;
  if (c.image % c.patch !== 0) throw new ConfigError(`model config: image ${c.image} is not a multiple of patch ${c.patch}`);
  if (c.dim % c.heads !== 0) throw new ConfigError(`model config: dim ${c.dim} is not divisible by heads ${c.heads}`);
  return c;
}

export function numPatches(cfg: VitConfig): number {
  return (cfg.image / cfg.patch) ** 2;
}

function linear(name: string, fanIn: number, fanOut: number, group: ParamSpec['group']): ParamSpec[] {
  // PyTorch nn.Linear default: kaiming_uniform(a = sqrt 5) => U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias likewise.
  const bound = 1 / Math.sqrt(fanIn);
  return [
    { name: `${name}.weight`, shape: [fanIn, fanOut], init: { kind: 'uniform', bound }, group },
    { name: `${name}.bias`, shape: [fanOut], init: { kind: 'uniform', bound }, group },
  ];
}

function norm(name: string, d: number, group: ParamSpec['group']): ParamSpec[] {
  return [
    { name: `${name}.weight`, shape: [d], init: { kind: 'const', value: 1 }, group },
    { name: `${name}.bias`, shape: [d], init: { kind: 'const', value: 0 }, group },
  ];
}

/** Backbone tensors (patch embedding, CLS, positions, blocks), in a fixed order. */
export function backboneSpecs(cfg: VitConfig): ParamSpec[] {
  const d = cfg.dim;
  const pp = cfg.patch * cfg.patch * cfg.channels;
  const specs: ParamSpec[] = [
    ...linear('patch_embed', pp, d, 'backbone'),
    { name: 'cls_token', shape: [1, 1, d], init: { kind: 'trunc-normal', std: 0.02 }, group: 'backbone' },
    { name: 'pos_embed', shape: [1, numPatches(cfg) + 1, d], init: { kind: 'trunc-normal', std: 0.02 }, group: 'backbone' },
  ];
  for (let i = 0; i < cfg.depth; i++) {
    const p = `blocks.${i}`;
    specs.push(
      ...norm(`${p}.norm1`, d, 'backbone'),
      ...linear(`${p}.attn.q`, d, d, 'backbone'),
      ...linear(`${p}.attn.k`, d, d, 'backbone'),
      ...linear(`${p}.attn.v`, d, d, 'backbone'),
      ...linear(`${p}.attn.proj`, d, d, 'backbone'),
      ...norm(`${p}.norm2`, d, 'backbone'),
      ...linear(`${p}.mlp.fc1`, d, cfg.mlp, 'backbone'),
      ...linear(`${p}.mlp.fc2`, cfg.mlp, d, 'backbone'),
    );
  }
  return specs;
}

/** Exit head tensors: per block, LayerNorm(CLS) then Linear to classes. */
export function exitSpecs(cfg: VitConfig): ParamSpec[] {
  const specs: ParamSpec[] = [];
  for (let i = 0; i < cfg.depth; i++) specs.push(...norm(`exits.${i}.norm`, cfg.dim, 'exit'), ...linear(`exits.${i}.head`, cfg.dim, cfg.classes, 'exit'));
  return specs;
}

function loraDims(cfg: VitConfig, target: LoraTarget): [string, number, number] {
  switch (target) {
    case 'q':
    case 'k':
    case 'v':
    case 'proj':
      return [`attn.${target}`, cfg.dim, cfg.dim];
    case 'fc1':
      return ['mlp.fc1', cfg.dim, cfg.mlp];
    case 'fc2':
      return ['mlp.fc2', cfg.mlp, cfg.dim];
  }
}

/** LoRA tensors `blocks.{i}.<proj>.lora_a` [in, r] and `.lora_b` [r, out]. */
export function loraSpecs(cfg: VitConfig, lora: LoraConfig): ParamSpec[] {
  const specs: ParamSpec[] = [];
  for (let i = 0; i < cfg.depth; i++) {
    for (const t of LORA_TARGETS) {
      if (!lora.targets.includes(t)) continue;
      const [mod, fin, fout] = loraDims(cfg, t);
      // peft's init: A kaiming_uniform(a = sqrt 5) over fan_in = in; B zero, so training starts at the backbone.
      specs.push(
        { name: `blocks.${i}.${mod}.lora_a`, shape: [fin, lora.rank], init: { kind: 'uniform', bound: 1 / Math.sqrt(fin) }, group: 'lora' },
        { name: `blocks.${i}.${mod}.lora_b`, shape: [lora.rank, fout], init: { kind: 'const', value: 0 }, group: 'lora' },
      );
    }
  }
  return specs;
}

/** The tensors that train under a trainable set. */
export function trainableSpecs(cfg: VitConfig, set: TrainableSet, lora: LoraConfig | null): ParamSpec[] {
  switch (set) {
    case 'heads':
      return exitSpecs(cfg);
    case 'lora+heads':
      if (!lora) throw new ConfigError('trainable set lora+heads needs a LoRA config');
      return [...loraSpecs(cfg, lora), ...exitSpecs(cfg)];
    case 'all':
      return [...backboneSpecs(cfg), ...exitSpecs(cfg)];
  }
}

export type Weights = Map<string, Float32Array>;

/** Initialize tensors from their specs with a seeded generator (PyTorch's default inits). */
export function initWeights(specs: readonly ParamSpec[], seed: number): Weights {
  const rng = new Rng(seed);
  const w: Weights = new Map();
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    const init = s.init;
    if (init.kind === 'uniform') for (let i = 0; i < n; i++) a[i] = rng.uniform(-init.bound, init.bound);
    else if (init.kind === 'const') a.fill(init.value);
    else {
      // Truncated normal on [-2 std, 2 std] (timm's trunc_normal_ with a = -2, b = 2 at std 0.02 is effectively this).
      for (let i = 0; i < n; i++) {
        let v: number;
        do v = rng.normal(); while (v < -2 || v > 2);
        a[i] = v * init.std;
      }
    }
    w.set(s.name, a);
  }
  return w;
}

/** Resolves a parameter name to a graph tensor (a graph input when it trains, an initializer when frozen). */
export type ParamSource = (name: string) => Tensor;

export interface ForwardOptions {
  /** Blocks to run (1..depth); exits 0..blocks-1 are produced. Default: all. */
  blocks?: number;
  lora?: LoraConfig | null;
  /** Use com.microsoft.Gelu (fused, the default) instead of the Erf composition. */
  fusedGelu?: boolean;
  /**
   * Attention core as the 'Attention' composite (default true; its VJP skips a pass over the [n, n] scores) instead
   * of FusedMatMul, Softmax and MatMul differentiated one by one. The forward ops are the same.
   */
  fusedAttention?: boolean;
  /**
   * Use ONNX LayerNormalization instead of the composition from primitives. Off by default: onnxruntime 1.29's
   * CPU LayerNormalization kernel measured 2-3x slower than the composed form on [64, 50, 64] (scripts/bench-train).
   */
  fusedLayerNorm?: boolean;
}

export interface ForwardResult {
  /** Logits per exit, [B, classes]. */
  logits: Tensor[];
  /** Exit embeddings z = LayerNorm(CLS) per exit, [B, dim] (the prototype space). */
  embeddings: Tensor[];
}

interface Ops {
  lin: (x: Tensor, name: string, target?: LoraTarget) => Tensor;
  ln: (x: Tensor, name: string) => Tensor;
  /** LayerNorm `norm` of x, then the linear maps `maps` of its output (one 'LayerNormLinear' composite). */
  lnLin: (x: Tensor, norm: string, maps: readonly [string, LoraTarget][]) => Tensor[];
  /** The activation, then the linear map `name` of its output. */
  actLin: (x: Tensor, name: string, target?: LoraTarget) => Tensor;
}

function ops(cfg: VitConfig, gr: G.Graph, param: ParamSource, opts: ForwardOptions): Ops {
  const lora = opts.lora ?? null;
  const weight = (name: string, target?: LoraTarget): Tensor => {
    const w = param(`${name}.weight`);
    if (!lora || !target || !lora.targets.includes(target)) return w;
    // LoRA merged into the weight, W' = W + (alpha/r)·A·B (a [in, r] x [r, out] product per step): the
    // activations go through one GEMM forward and one backward instead of two skinny GEMMs, a scale and an add
    // each way; the factors' gradients come from dW' = xᵀ·dy (one GEMM) as (alpha/r)·dW'·Bᵀ and (alpha/r)·Aᵀ·dW'.
    return G.add(w, G.mul(G.matmul(param(`${name}.lora_a`), param(`${name}.lora_b`)), gr.scalar(lora.alpha / lora.rank, 'float32')));
  };
  const lin = (x: Tensor, name: string, target?: LoraTarget): Tensor => G.add(G.matmul(x, weight(name, target)), param(`${name}.bias`));
  const ln = (x: Tensor, name: string): Tensor =>
    (opts.fusedLayerNorm ? G.layerNorm : G.layerNormC)(x, param(`${name}.weight`), param(`${name}.bias`), cfg.eps);
  // The composite's backward folds LayerNorm's scale and centring into the maps' dx GEMMs (see 'LayerNormLinear');
  // its forward is LayerNormC's chain and the same MatMul + Add per map.
  const lnLin = (x: Tensor, norm: string, maps: readonly [string, LoraTarget][]): Tensor[] => {
    if (!opts.fusedLayerNorm) {
      const linear = maps.map(([name, target]) => ({ weight: weight(name, target), bias: param(`${name}.bias`) }));
      return G.layerNormLinear(x, param(`${norm}.weight`), param(`${norm}.bias`), linear, cfg.eps);
    }
    const a = ln(x, norm);
    return maps.map(([name, target]) => lin(a, name, target));
  };
  // Default: exact GELU and the following map as one 'GeluLinear' composite (ORT's fused Gelu kernel in inference
  // graphs), whose closed-form VJP reuses the forward's erf and folds GELU's ½ into the dx GEMM. The Erf composition
  // (fusedGelu: false) is differentiated op by op.
  const actLin = (x: Tensor, name: string, target?: LoraTarget): Tensor =>
    opts.fusedGelu ?? true ? G.geluLinear(x, weight(name, target), param(`${name}.bias`)) : lin(G.gelu(x), name, target);
  return { lin, ln, lnLin, actLin };
}

/**
 * Patch embedding: `images` [B, channels, image, image] to the token sequence [B, patches + 1, dim] (CLS first,
 * positions added). Patches are flattened row-major inside each patch (channel-major, then rows, then columns),
 * patches in raster order.
 */
export function vitEmbed(cfg: VitConfig, images: Tensor, param: ParamSource, opts: ForwardOptions = {}): Tensor {
  const B = images.shape[0];
  const gp = cfg.image / cfg.patch;
  const np = gp * gp;
  const { lin } = ops(cfg, images.graph, param, opts);
  // [B, C, H, W] -> [B, gp, P, gp, P] per channel -> [B, gp, gp, C, P, P] -> [B, np, C*P*P]
  let p = G.reshape(images, [B, cfg.channels, gp, cfg.patch, gp, cfg.patch]);
  p = G.transpose(p, [0, 2, 4, 1, 3, 5]);
  p = G.reshape(p, [B, np, cfg.channels * cfg.patch * cfg.patch]);
  const tokens = lin(p, 'patch_embed');
  const cls = G.expand(param('cls_token'), [B, 1, cfg.dim]);
  return G.add(G.concat([cls, tokens], 1), param('pos_embed'));
}

/**
 * Transformer block `i` (pre-norm attention + MLP, LoRA where configured) on the hidden state [B, n, dim]. With
 * `clsOnly` it returns only the CLS row of the output, [B, 1, dim], computing queries and everything after the
 * attention for that row alone (for a block whose output only an exit reads).
 */
export function vitBlock(cfg: VitConfig, x: Tensor, i: number, param: ParamSource, opts: ForwardOptions = {}, clsOnly = false): Tensor {
  const [B, n] = x.shape;
  const nq = clsOnly ? 1 : n;
  const d = cfg.dim;
  const h = cfg.heads;
  const hd = d / h;
  const gr = x.graph;
  const { lin, lnLin, actLin } = ops(cfg, gr, param, opts);
  const pre = `blocks.${i}`;
  // Heads as [B, h, n, hd] (a cheap transpose: hd stays contiguous); scores = Q·Kᵀ/√hd in one FusedMatMul, so
  // K is never laid out as [B, h, hd, n] (that transpose, forward and backward, cost ~0.3 ms each at batch 64).
  // A sequence-first hidden state read through FusedMatMul's transBatch strides drops the head-split transposes:
  // its forward measured 0.5 ms faster, but its LoRA step 0.7 ms slower (strided GEMMs and [n, B, h, hd]
  // gradient transposes), so the layout stays batch-first.
  const heads = (t: Tensor): Tensor => G.transpose(G.reshape(t, [B, t.shape[1], h, hd]), [0, 2, 1, 3]);
  const q1: [string, LoraTarget] = [`${pre}.attn.q`, 'q'];
  const kv: [string, LoraTarget][] = [[`${pre}.attn.k`, 'k'], [`${pre}.attn.v`, 'v']];
  // clsOnly (the last block before the last exit, which reads only the CLS token): keys and values need every
  // token, but queries, the attention output, the residual and the MLP only the CLS row. LayerNorm is per token,
  // so the CLS query takes its own LayerNorm of x[:, 0]. The result is [B, 1, dim], exactly the full block's CLS.
  const xq = clsOnly ? G.slice(x, [0], [1], [1]) : x;
  const [q, k, v] = (clsOnly ? [...lnLin(xq, `${pre}.norm1`, [q1]), ...lnLin(x, `${pre}.norm1`, kv)] : lnLin(x, `${pre}.norm1`, [q1, ...kv])).map(heads);
  const scale = 1 / Math.sqrt(hd);
  // softmax(Q·Kᵀ/√hd)·V as one composite: its VJP takes the softmax row term from dO⊙O ([n, hd]) instead of
  // dP⊙P ([n, n]). The unfused form (fusedAttention: false) differentiates the same three ops one by one.
  const attn = opts.fusedAttention ?? true
    ? G.attention(q, k, v, scale)
    : G.matmul(G.softmax(G.matmulT(q, k, { transB: true, alpha: scale }), -1), v);
  const merged = G.reshape(G.transpose(attn, [0, 2, 1, 3]), [B, nq, d]);
  let y = G.add(xq, lin(merged, `${pre}.attn.proj`, 'proj'));
  const [h1] = lnLin(y, `${pre}.norm2`, [[`${pre}.mlp.fc1`, 'fc1']]);
  y = G.add(y, actLin(h1, `${pre}.mlp.fc2`, 'fc2'));
  return y;
}

/** Exit head `i` on the hidden state after block i: z = LayerNorm(CLS) [B, dim], logits = z W + b [B, classes]. */
export function vitExit(cfg: VitConfig, x: Tensor, i: number, param: ParamSource, opts: ForwardOptions = {}): { logits: Tensor; embedding: Tensor } {
  const B = x.shape[0];
  const { lin, ln } = ops(cfg, x.graph, param, opts);
  const clsTok = G.reshape(x.shape[1] === 1 ? x : G.slice(x, [0], [1], [1]), [B, cfg.dim]);
  const embedding = ln(clsTok, `exits.${i}.norm`);
  return { embedding, logits: lin(embedding, `exits.${i}.head`) };
}

/**
 * The forward pass on `images` [B, channels, image, image]: {@link vitEmbed}, then per block {@link vitBlock}
 * and {@link vitExit}, for the first `opts.blocks` blocks.
 */
export function vitForward(cfg: VitConfig, images: Tensor, param: ParamSource, opts: ForwardOptions = {}): ForwardResult {
  const blocks = opts.blocks ?? cfg.depth;
  if (!Number.isInteger(blocks) || blocks < 1 || blocks > cfg.depth) throw new ConfigError(`blocks must be in 1..${cfg.depth}`);
  let x = vitEmbed(cfg, images, param, opts);
  const logits: Tensor[] = [];
  const embeddings: Tensor[] = [];
  for (let i = 0; i < blocks; i++) {
    // The last block feeds only its exit, which reads the CLS token: computed for CLS alone.
    x = vitBlock(cfg, x, i, param, opts, i === blocks - 1);
    const e = vitExit(cfg, x, i, param, opts);
    embeddings.push(e.embedding);
    logits.push(e.logits);
  }
  return { logits, embeddings };
}
