/**
 * The imported graph as fmfl stores it (inside the backbone checkpoint's metadata, so the checkpoint's SHA-256,
 * which the federation digest covers, covers the graph too): the ONNX nodes with decoded attributes, small
 * constants, the weight names, the LoRA sites chosen at import and the exit tensors. Weight values live in the
 * checkpoint's tensors under their fmfl names.
 */

export type ConstDType = 'float32' | 'float64' | 'int32' | 'int64' | 'bool';

/** A constant (initializer, Constant node or folded shape value). */
export interface ConstValue {
  dtype: ConstDType;
  shape: number[];
  data: number[];
}

export type IrAttr = number | string | number[] | { tensor: ConstValue };

export interface IrNode {
  op: string;
  /** The ONNX node name (PyTorch: the module path, e.g. `/blocks.0/attn/qkv/MatMul`). */
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, IrAttr>;
}

/** A MatMul/Gemm with a constant weight that gets LoRA: W' = W + (alpha/r)·A·B on its [in, out] form. */
export interface LoraSite {
  /** ONNX node name. */
  node: string;
  /** ONNX value name of the weight. */
  weight: string;
  /** LoRA tensor prefix: `<prefix>.lora_a` [in, r], `<prefix>.lora_b` [r, out]. */
  prefix: string;
  in: number;
  out: number;
}

/** An exit: a fresh LayerNorm + Linear head on a tensor of the graph. */
export interface ExitSite {
  /** ONNX value name of the tensor the head reads (a block output). */
  tensor: string;
  /** Per-sample shape of that tensor (without the batch). */
  shape: number[];
  /**
   * `--keep-head`: instead of a fresh head, the model's own classifier: the graph runs on from `tensor` to its
   * output `logits` ([B, classes]); the exit's embedding is the classifier's input `features` ([B, dim]).
   */
  kept?: { logits: string; features: string; classes: number };
}

export const IMPORTED_GRAPH_FORMAT = 'fmfl-onnx-graph/1';

export interface ImportedGraph {
  format: typeof IMPORTED_GRAPH_FORMAT;
  /** The model's default-domain opset (op semantics that changed across opsets follow it). */
  opset: number;
  input: { name: string; channels: number; size: number };
  /** The original graph outputs (the reference forward's outputs). */
  outputs: string[];
  nodes: IrNode[];
  consts: Record<string, ConstValue>;
  /** Frozen weights: fmfl tensor name, ONNX value name, shape. */
  weights: { name: string; onnx: string; shape: number[] }[];
  lora: LoraSite[];
  exits: ExitSite[];
  /** Feature size every exit head reads (token width, channel count). */
  dim: number;
  /** `false` builds the training forward's last block for every token (cls-only-last-block.ts off; benchmarks). */
  clsOnly?: boolean;
}
