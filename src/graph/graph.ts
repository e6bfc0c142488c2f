import { FmflError } from '../util/errors.ts';

/** Element types the graph builder knows, with their ONNX TensorProto.DataType codes. */
export const DTYPES = {
  float32: 1,
  uint8: 2,
  int32: 6,
  int64: 7,
  bool: 9,
  float64: 11,
} as const;
export type DType = keyof typeof DTYPES;
export type FloatDType = 'float32' | 'float64';
export type Shape = readonly number[];

export type AttrValue = number | string | readonly number[] | readonly string[];
export type Attrs = Readonly<Record<string, AttrValue>>;

/** The graph could not be built: a shape mismatch, a bad argument, an unknown op. Names the op. */
export class GraphError extends FmflError {
  readonly op: string;
  constructor(op: string, message: string) {
    super('GRAPH', `${op}: ${message}`);
    this.op = op;
  }
}

/** A gradient was asked for through an op (or an input of an op) that has none. Names the op. */
export class GradientError extends FmflError {
  readonly op: string;
  constructor(op: string, message: string) {
    super('GRADIENT', `no gradient through ${op}: ${message}`);
    this.op = op;
  }
}

/** Where a tensor comes from. */
export type TensorKind = 'input' | 'initializer' | 'node';

/** A value in the graph: a graph input, an initializer (constant or frozen weight) or a node output. */
export class Tensor {
  readonly graph: Graph;
  readonly id: number;
  readonly shape: Shape;
  readonly dtype: DType;
  readonly kind: TensorKind;
  /** The node producing it (kind 'node'), and which of its outputs it is. */
  readonly node: GraphNode | null;
  readonly outputIndex: number;
  /** Name in the exported ONNX graph (set for inputs, initializers, and marked outputs). */
  name: string;

  constructor(graph: Graph, id: number, shape: Shape, dtype: DType, kind: TensorKind, node: GraphNode | null, outputIndex: number, name: string) {
    this.graph = graph;
    this.id = id;
    this.shape = shape;
    this.dtype = dtype;
    this.kind = kind;
    this.node = node;
    this.outputIndex = outputIndex;
    this.name = name;
  }

  get rank(): number {
    return this.shape.length;
  }

  get size(): number {
    return shapeSize(this.shape);
  }
}

/** One application of an op. */
export interface GraphNode {
  readonly id: number;
  readonly op: string;
  readonly inputs: readonly Tensor[];
  readonly attrs: Attrs;
  readonly outputs: Tensor[];
}

/** Data of an initializer. */
export type TensorData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

export interface Initializer {
  readonly tensor: Tensor;
  readonly data: TensorData;
}

export function shapeSize(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeEq(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * A static-shape tensor graph. Ops are applied through the functions in `ops/api.ts`; `grad()` appends the backward
 * graph; `exportOnnx()` serializes it. Names are deterministic: the same build yields the same bytes.
 */
export class Graph {
  readonly nodes: GraphNode[] = [];
  readonly inputs: Tensor[] = [];
  readonly initializers: Initializer[] = [];
  readonly outputs: Tensor[] = [];
  private nextId = 0;
  private readonly names = new Set<string>();
  private readonly constCache = new Map<string, Tensor>();

  /** A graph input fed at run time (trainable tensors, data, labels). */
  input(name: string, shape: Shape, dtype: DType = 'float32'): Tensor {
    this.claim(name);
    checkShape('input', shape);
    const t = new Tensor(this, this.nextId++, [...shape], dtype, 'input', null, 0, name);
    this.inputs.push(t);
    return t;
  }

  /** A named initializer: frozen weights baked into the model. */
  initializer(name: string, data: TensorData, shape: Shape, dtype?: DType): Tensor {
    this.claim(name);
    checkShape('initializer', shape);
    const dt = dtype ?? dtypeOf(data);
    if (data.length !== shapeSize(shape)) {
      throw new GraphError('initializer', `${name}: ${data.length} values for shape [${shape.join(',')}]`);
    }
    const t = new Tensor(this, this.nextId++, [...shape], dt, 'initializer', null, 0, name);
    this.initializers.push({ tensor: t, data });
    return t;
  }

  /** An anonymous constant; identical small constants are shared. */
  constant(values: readonly number[] | TensorData, shape: Shape, dtype: DType): Tensor {
    const arr = toTyped(values, dtype);
    const key = arr.length <= 16 ? `${dtype}|${shape.join(',')}|${Array.from(arr as ArrayLike<number | bigint>).join(',')}` : null;
    if (key !== null) {
      const hit = this.constCache.get(key);
      if (hit) return hit;
    }
    const id = this.nextId++;
    const name = `c${id}`;
    this.claim(name);
    const t = new Tensor(this, id, [...shape], dtype, 'initializer', null, 0, name);
    this.initializers.push({ tensor: t, data: arr });
    if (key !== null) this.constCache.set(key, t);
    return t;
  }

  /** A scalar constant of the given dtype. */
  scalar(value: number, dtype: DType = 'float32'): Tensor {
    return this.constant([value], [], dtype);
  }

  /** Mark a tensor as a graph output under `name`. */
  output(t: Tensor, name: string): Tensor {
    this.own(t);
    if (t.kind !== 'node' || this.outputs.includes(t)) {
      // ONNX outputs must be distinct node outputs: route inputs, initializers and repeats through Identity.
      t = this.addNode('Identity', [t], {}, [{ shape: t.shape, dtype: t.dtype }])[0];
    }
    this.claim(name);
    t.name = name;
    this.outputs.push(t);
    return t;
  }

  /** Low level: append a node whose output types are already known. Use the functions in ops/api.ts instead. */
  addNode(op: string, inputs: readonly Tensor[], attrs: Attrs, outTypes: readonly { shape: Shape; dtype: DType }[]): Tensor[] {
    for (const t of inputs) this.own(t);
    const id = this.nextId++;
    const outputs: Tensor[] = [];
    const node: GraphNode = { id, op, inputs: [...inputs], attrs, outputs };
    outTypes.forEach((ty, i) => {
      checkShape(op, ty.shape);
      outputs.push(new Tensor(this, this.nextId++, [...ty.shape], ty.dtype, 'node', node, i, `t${id}_${i}`));
    });
    this.nodes.push(node);
    return outputs;
  }

  private own(t: Tensor): void {
    if (t.graph !== this) throw new GraphError('graph', `tensor ${t.name} belongs to another graph`);
  }

  private claim(name: string): void {
    if (!/^[A-Za-z0-9_.:/-]+$/.test(name)) throw new GraphError('graph', `invalid tensor name ${JSON.stringify(name)}`);
    if (this.names.has(name)) throw new GraphError('graph', `duplicate tensor name ${name}`);
    this.names.add(name);
  }
}

function checkShape(op: string, shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new GraphError(op, `invalid shape [${shape.join(',')}]`);
  }
}

export function dtypeOf(data: TensorData): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  return 'uint8';
}

export function toTyped(values: readonly number[] | TensorData, dtype: DType): TensorData {
  if (!Array.isArray(values)) return values as TensorData;
  const v = values as readonly number[];
  switch (dtype) {
    case 'float32':
      return Float32Array.from(v);
    case 'float64':
      return Float64Array.from(v);
    case 'int32':
      return Int32Array.from(v);
    case 'int64':
      return BigInt64Array.from(v.map((x) => BigInt(x)));
    case 'uint8':
    case 'bool':
      return Uint8Array.from(v);
  }
}

export function isFloat(dtype: DType): dtype is FloatDType {
  return dtype === 'float32' || dtype === 'float64';
}
