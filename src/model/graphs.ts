/**
 * ONNX graphs of the ViT: the training graph (forward, loss, gradients of the trainable tensors) and the
 * inference graph (per-exit logits and embeddings). Frozen weights are initializers; trainable tensors are
 * graph inputs, so one onnxruntime session serves every step and every weight version.
 */
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import { ConfigError } from '../util/errors.ts';
import type { LoraConfig, ParamSpec, VitConfig, Weights } from './vit.ts';
import { architectureOf, modelTensors } from './architecture.ts';

export interface GraphSpec {
  cfg: VitConfig;
  lora: LoraConfig | null;
  /** Tensors fed at run time (trainable), with shapes. */
  trainable: readonly ParamSpec[];
  /** Every other tensor of the model, baked in as initializers. */
  frozen: Weights;
  batch: number;
  /** Use ORT's fused com.microsoft.Gelu (default true; false: the Erf composition, which ORT fuses in inference graphs but whose autodiff backward costs more). */
  fusedGelu?: boolean;
  /** Attention core as one composite with a leaner VJP (default true; see ForwardOptions.fusedAttention). */
  fusedAttention?: boolean;
  /** ONNX LayerNormalization instead of the composite (default false; see ForwardOptions.fusedLayerNorm). */
  fusedLayerNorm?: boolean;
}

export interface TrainGraphSpec extends GraphSpec {
  /**
   * Weight of the prototype term: loss += protoWeight * mean_exits mean_batch mask[e, y] ||z_e - p[e, y]||^2.
   * When > 0 the graph takes inputs `prototypes` [exits, classes, dim] and `proto_mask` [exits, classes].
   */
  protoWeight?: number;
  /**
   * Logit adjustment (balanced softmax; Menon et al. 2021, FedLC, Zhang et al. 2022): the graph takes an input
   * `logit_bias` [classes] added to every exit's logits inside the training loss only. A node feeds the log of its
   * local label prior, so local training stops pushing the shared heads towards the node's own classes.
   */
  logitAdjust?: boolean;
  /** Depth budget: build the first `blocks` blocks and exits only (forward, loss and backward scale with it); default all. */
  blocks?: number;
  /**
   * Mutual self-distillation between the exits (DepthFL, Kim et al. ICLR 2023): weight w of the term added to the
   * loss, (w / E) * sum_k 1/(E-1) * sum_{j != k} T^2 * mean_batch KL(q_j || q_k), q_e = softmax(logits_e / T), the
   * target q_j detached (stopGradient), so each exit learns the other exits' softened predictions. 0 (default) or
   * a single exit: no term.
   */
  distillWeight?: number;
  /** Temperature T of the distillation term (default 1: DepthFL's plain softmax). */
  distillTemperature?: number;
}

/** Input names of the graphs. */
export const IMAGES = 'images';
export const LABELS = 'labels';
export const PROTOTYPES = 'prototypes';
export const PROTO_MASK = 'proto_mask';
export const LOGIT_BIAS = 'logit_bias';
export const gradName = (param: string): string => `grad:${param}`;
export const logitsName = (exit: number): string => `logits:${exit}`;
export const embeddingName = (exit: number): string => `embedding:${exit}`;

function paramSource(g: G.Graph, spec: GraphSpec): (name: string) => Tensor {
  const trainable = new Map(spec.trainable.map((s) => [s.name, s]));
  const shapes = new Map(modelSpecs(spec.cfg, spec.lora).map((s) => [s.name, s.shape]));
  const made = new Map<string, Tensor>();
  return (name: string): Tensor => {
    let t = made.get(name);
    if (t) return t;
    const ts = trainable.get(name);
    if (ts) t = g.input(name, ts.shape);
    else {
      const data = spec.frozen.get(name);
      if (!data) throw new ConfigError(`the model needs tensor ${name}, which is neither trainable nor in the frozen weights`);
      const shape = shapes.get(name);
      if (!shape) throw new ConfigError(`unknown model tensor ${name}`);
      t = g.initializer(name, data, shape);
    }
    made.set(name, t);
    return t;
  };
}

function imagesInput(g: G.Graph, spec: GraphSpec): Tensor {
  return g.input(IMAGES, [spec.batch, spec.cfg.channels, spec.cfg.image, spec.cfg.image]);
}

/** Every tensor of the model (backbone, exits, LoRA when configured). */
export function modelSpecs(cfg: VitConfig, lora: LoraConfig | null): ParamSpec[] {
  return modelTensors(cfg, lora);
}

export interface BuiltGraph {
  onnx: Uint8Array;
  /** Trainable tensor names, in input order. */
  params: string[];
  /** Number of graph nodes (forward + backward) before ORT's optimizations. */
  nodes: number;
}

/**
 * Training graph. Inputs: images [B, C, H, W] float32, labels [B] int64, every trainable tensor, and the
 * prototype inputs when protoWeight > 0. Outputs: `loss` (scalar), `loss_ce`, `logits:<last exit>` and
 * `grad:<name>` per trainable tensor. Loss = mean over exits of the softmax cross-entropy (+ prototype term).
 */
export function buildTrainGraph(spec: TrainGraphSpec): BuiltGraph {
  const g = new G.Graph();
  const images = imagesInput(g, spec);
  const labels = g.input(LABELS, [spec.batch], 'int64');
  const param = paramSource(g, spec);
  const trainTensors = spec.trainable.map((s) => param(s.name));
  const { logits, embeddings } = architectureOf(spec.cfg).forward(spec.cfg, images, param, { lora: spec.lora, fusedGelu: spec.fusedGelu, fusedAttention: spec.fusedAttention, fusedLayerNorm: spec.fusedLayerNorm, blocks: spec.blocks });
  const E = logits.length;
  const bias = spec.logitAdjust ? g.input(LOGIT_BIAS, [spec.cfg.classes]) : null;
  const adjusted = (z: Tensor): Tensor => (bias ? G.add(z, bias) : z);
  let ce = G.softmaxCrossEntropy(adjusted(logits[0]), labels);
  for (let e = 1; e < E; e++) ce = G.add(ce, G.softmaxCrossEntropy(adjusted(logits[e]), labels));
  ce = G.mul(ce, g.scalar(1 / E));
  let loss = ce;
  const pw = spec.protoWeight ?? 0;
  if (pw > 0) {
    const protos = g.input(PROTOTYPES, [E, spec.cfg.classes, spec.cfg.dim]);
    const mask = g.input(PROTO_MASK, [E, spec.cfg.classes]);
    let term: Tensor | null = null;
    for (let e = 0; e < E; e++) {
      const pe = G.reshape(G.slice(protos, [e], [e + 1], [0]), [spec.cfg.classes, spec.cfg.dim]);
      const me = G.reshape(G.slice(mask, [e], [e + 1], [0]), [spec.cfg.classes]);
      const target = G.gather(pe, labels, 0);
      const w = G.gather(me, labels, 0);
      const diff = G.sub(embeddings[e], target);
      const sq = G.reduceSum(G.mul(diff, diff), [1], false);
      const t = G.reduceMean(G.mul(sq, w), [0], false);
      term = term ? G.add(term, t) : t;
    }
    loss = G.add(loss, G.mul(term!, g.scalar(pw / E)));
  }
  const dw = spec.distillWeight ?? 0;
  const distill = dw > 0 && E > 1 ? mutualDistillation(logits, spec.distillTemperature ?? 1) : null;
  if (distill) loss = G.add(loss, G.mul(distill, g.scalar(dw)));
  const grads = G.grad(loss, trainTensors);
  g.output(loss, 'loss');
  g.output(ce, 'loss_ce');
  if (distill) g.output(distill, 'loss_distill');
  g.output(logits[E - 1], logitsName(E - 1));
  spec.trainable.forEach((s, i) => g.output(grads[i], gradName(s.name)));
  return { onnx: G.exportOnnx(g, { name: 'fmfl-vit-train' }), params: spec.trainable.map((s) => s.name), nodes: g.nodes.length };
}

/**
 * The unweighted mutual self-distillation term over the exits' logits [B, C] (E >= 2):
 * (1/E) * sum_k 1/(E-1) * sum_{j != k} T^2 * mean_b KL(q_j || q_k), q_e = softmax(z_e / T), targets detached.
 * Zero exactly when every exit predicts the same distribution.
 */
export function mutualDistillation(logits: readonly Tensor[], temperature: number): Tensor {
  if (!(temperature > 0) || !Number.isFinite(temperature)) throw new ConfigError(`distillation temperature must be a finite positive number, got ${temperature}`);
  const E = logits.length;
  if (E < 2) throw new ConfigError('mutual distillation needs at least two exits');
  const g = logits[0].graph;
  const dt = logits[0].dtype;
  const logSoftmax = (z: Tensor): Tensor => {
    const s = G.mul(z, g.scalar(1 / temperature, dt));
    const c = G.sub(s, G.stopGradient(G.reduceMax(s, [1], true)));
    return G.sub(c, G.log(G.reduceSum(G.exp(c), [1], true)));
  };
  const logQ = logits.map(logSoftmax);
  // Targets: the detached softened predictions and their logs.
  const logT = logQ.map((l) => G.stopGradient(l));
  const qT = logT.map((l) => G.exp(l));
  let sum: Tensor | null = null;
  for (let k = 0; k < E; k++) {
    for (let j = 0; j < E; j++) {
      if (j === k) continue;
      // KL(q_j || q_k) per sample, then the batch mean.
      const kl = G.reduceMean(G.reduceSum(G.mul(qT[j], G.sub(logT[j], logQ[k])), [1], false), [0], false);
      sum = sum ? G.add(sum, kl) : kl;
    }
  }
  return G.mul(sum!, g.scalar((temperature * temperature) / (E * (E - 1)), dt));
}

export interface InferGraphSpec extends GraphSpec {
  /** Blocks to run (exits 0..blocks-1 are produced); default all. */
  blocks?: number;
}

/**
 * Inference graph: inputs images + trainable tensors; outputs `logits:<e>` and `embedding:<e>` for every exit
 * up to `blocks`. One pass: stopping at exit k runs only blocks 0..k.
 */
export function buildInferGraph(spec: InferGraphSpec): BuiltGraph {
  const g = new G.Graph();
  const images = imagesInput(g, spec);
  const param = paramSource(g, spec);
  for (const s of spec.trainable) param(s.name);
  const { logits, embeddings } = architectureOf(spec.cfg).forward(spec.cfg, images, param, { lora: spec.lora, fusedGelu: spec.fusedGelu, fusedAttention: spec.fusedAttention, fusedLayerNorm: spec.fusedLayerNorm, blocks: spec.blocks });
  logits.forEach((l, e) => g.output(l, logitsName(e)));
  embeddings.forEach((z, e) => g.output(z, embeddingName(e)));
  return { onnx: G.exportOnnx(g, { name: 'fmfl-vit-infer' }), params: spec.trainable.map((s) => s.name), nodes: g.nodes.length };
}
