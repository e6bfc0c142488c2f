import onnxProto from 'onnx-proto';
import { DTYPES, type AttrValue, type Graph, type Tensor, type TensorData } from './graph.ts';
import { getOp, type Emitter } from './ops/index.ts';

const { onnx } = onnxProto;

/** ONNX IR version and opsets fmfl emits; onnxruntime 1.29 supports both. Pinned so models are reproducible. */
export const ONNX_IR_VERSION = 8;
export const ONNX_OPSET = 17;
export const MS_OPSET = 1;

export interface ExportOptions {
  /** Graph name stored in the model. */
  name?: string;
}

/**
 * Serialize the part of the graph reachable from its outputs to ONNX bytes. Deterministic: the same build gives
 * the same bytes. Frozen weights become initializers; graph inputs stay inputs.
 */
export function exportOnnx(graph: Graph, opts: ExportOptions = {}): Uint8Array {
  if (graph.outputs.length === 0) throw new Error('exportOnnx: the graph has no outputs');
  // Live nodes: reachable backwards from the outputs.
  const live = new Set<number>();
  const liveTensors = new Set<number>();
  const stack: Tensor[] = [...graph.outputs];
  while (stack.length) {
    const t = stack.pop()!;
    if (liveTensors.has(t.id)) continue;
    liveTensors.add(t.id);
    if (t.node && !live.has(t.node.id)) {
      live.add(t.node.id);
      for (const i of t.node.inputs) stack.push(i);
    }
  }

  const nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  const extraInits: InstanceType<typeof onnx.TensorProto>[] = [];
  const i64Cache = new Map<string, string>();
  const scalarCache = new Map<string, string>();
  let tempId = 0;
  let usesMs = false;
  const emitter: Emitter = {
    name: (t) => t.name,
    node(opType, inputs, outputs, attrs = {}, domain) {
      if (domain === 'com.microsoft') usesMs = true;
      nodes.push(
        onnx.NodeProto.create({
          opType,
          input: [...inputs],
          output: [...outputs],
          name: `n${nodes.length}_${opType}`,
          domain: domain ?? '',
          attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
        }),
      );
    },
    i64(values) {
      const key = values.join(',');
      let name = i64Cache.get(key);
      if (!name) {
        name = `k${i64Cache.size}`;
        i64Cache.set(key, name);
        extraInits.push(tensorProto(name, [values.length], 'int64', BigInt64Array.from(values.map((v) => BigInt(v)))));
      }
      return name;
    },
    temp: () => `tmp${tempId++}`,
    isLive: (t) => liveTensors.has(t.id),
    scalar(value, dtype) {
      const key = `${dtype}:${value}`;
      let name = scalarCache.get(key);
      if (!name) {
        name = `s${scalarCache.size}`;
        scalarCache.set(key, name);
        extraInits.push(tensorProto(name, [], dtype, dtype === 'float64' ? Float64Array.of(value) : Float32Array.of(value)));
      }
      return name;
    },
  };
  for (const n of graph.nodes) {
    if (live.has(n.id)) getOp(n.op).emit(emitter, n);
  }

  const initializer = graph.initializers
    .filter((i) => liveTensors.has(i.tensor.id))
    .map((i) => tensorProto(i.tensor.name, i.tensor.shape, i.tensor.dtype, i.data));
  const model = onnx.ModelProto.create({
    irVersion: ONNX_IR_VERSION,
    producerName: 'fmfl',
    producerVersion: '0.1.0',
    opsetImport: [
      { domain: '', version: ONNX_OPSET },
      ...(usesMs ? [{ domain: 'com.microsoft', version: MS_OPSET }] : []),
    ],
    graph: onnx.GraphProto.create({
      name: opts.name ?? 'fmfl',
      node: nodes,
      input: graph.inputs.map(valueInfo),
      output: graph.outputs.map(valueInfo),
      initializer: [...initializer, ...extraInits],
    }),
  });
  return onnx.ModelProto.encode(model).finish();
}

function valueInfo(t: Tensor): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name: t.name,
    type: {
      tensorType: {
        elemType: DTYPES[t.dtype],
        shape: { dim: t.shape.map((d) => ({ dimValue: d })) },
      },
    },
  });
}

function tensorProto(name: string, shape: readonly number[], dtype: keyof typeof DTYPES, data: TensorData): InstanceType<typeof onnx.TensorProto> {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return onnx.TensorProto.create({ name, dims: [...shape], dataType: DTYPES[dtype], rawData: bytes.slice() });
}

function attribute(name: string, v: AttrValue): InstanceType<typeof onnx.AttributeProto> {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return onnx.AttributeProto.create({ name, type: T.STRING, s: new TextEncoder().encode(v) });
  if (typeof v === 'number') {
    return Number.isInteger(v) && !FLOAT_ATTRS.has(name)
      ? onnx.AttributeProto.create({ name, type: T.INT, i: v })
      : onnx.AttributeProto.create({ name, type: T.FLOAT, f: v });
  }
  if (v.length > 0 && typeof v[0] === 'string') {
    return onnx.AttributeProto.create({ name, type: T.STRINGS, strings: (v as string[]).map((s) => new TextEncoder().encode(s)) });
  }
  return onnx.AttributeProto.create({ name, type: T.INTS, ints: [...(v as number[])] });
}

/** Attributes that ONNX types as float even when the value happens to be integral. */
const FLOAT_ATTRS = new Set(['epsilon', 'alpha', 'beta']);
