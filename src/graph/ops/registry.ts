/**
 * The op table's types and registry: every primitive is declared once (one module under src/graph/ops/), with its
 * shape rule, its ONNX emission and its vector-Jacobian product written in the same primitives (so the backward pass
 * is just more graph, in the spirit of tinygrad's gradient table). ops/index.ts registers every module's declarations.
 */
import { GraphError, type AttrValue, type Attrs, type GraphNode, type Shape, type DType, type Tensor } from '../graph.ts';

/** Emits ONNX nodes for one graph node (see onnx-export.ts). */
export interface Emitter {
  /** The ONNX value name of a tensor. */
  name(t: Tensor): string;
  /** Append an ONNX node. */
  node(opType: string, inputs: readonly string[], outputs: readonly string[], attrs?: Readonly<Record<string, AttrValue>>, domain?: string): void;
  /** Name of a 1-D int64 constant holding `values`. */
  i64(values: readonly number[]): string;
  /** A fresh intermediate value name. */
  temp(): string;
  /** Whether a node output is used by the exported graph (unused optional outputs can be left empty). */
  isLive(t: Tensor): boolean;
  /** Name of a scalar float constant of the given dtype. */
  scalar(value: number, dtype: 'float32' | 'float64'): string;
}

export interface TypeInfo {
  shape: Shape;
  dtype: DType;
}

/** One primitive op. */
export interface OpDef {
  readonly name: string;
  /** Output types from input types and attributes; throws GraphError on a mismatch. */
  infer(inputs: readonly Tensor[], attrs: Attrs): TypeInfo[];
  /** Emit ONNX. */
  emit(e: Emitter, node: GraphNode): void;
  /**
   * Gradients of the inputs given the gradients of the outputs (null = no gradient flows into that output).
   * Absent: the op is not differentiable; asking for a gradient through it raises GradientError.
   */
  vjp?(node: GraphNode, gradOuts: readonly (Tensor | null)[], needs: readonly boolean[]): (Tensor | null)[];
}

const OPS = new Map<string, OpDef>();

/** Register an op (each name once). Exported so that extensions can add ops with their own VJPs. */
export function defineOp(def: OpDef): OpDef {
  if (OPS.has(def.name)) throw new Error(`op ${def.name} declared twice`);
  OPS.set(def.name, def);
  return def;
}

/** The op definition for a name; throws GraphError naming an unknown op. */
export function getOp(name: string): OpDef {
  const op = OPS.get(name);
  if (!op) throw new GraphError(name, 'unknown op');
  return op;
}

/** All declared op names (for tests asserting every op is gradchecked). */
export function opNames(): string[] {
  return [...OPS.keys()].sort();
}

export function apply(op: string, inputs: readonly Tensor[], attrs: Attrs = {}): Tensor[] {
  if (inputs.length === 0) throw new GraphError(op, 'needs at least one input');
  const g = inputs[0].graph;
  const types = getOp(op).infer(inputs, attrs);
  return g.addNode(op, inputs, attrs, types);
}

export function apply1(op: string, inputs: readonly Tensor[], attrs: Attrs = {}): Tensor {
  return apply(op, inputs, attrs)[0];
}

export function emitSame(onnxType: string, domain?: string) {
  return (e: Emitter, n: GraphNode): void => {
    e.node(onnxType, n.inputs.map((t) => e.name(t)), n.outputs.map((t) => e.name(t)), n.attrs, domain);
  };
}
