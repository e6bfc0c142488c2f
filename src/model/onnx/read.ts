/**
 * Reading an ONNX model file (user input: validated before use) into the importer's plain form: nodes with
 * decoded attributes, float weight initializers, small constants, and the image input with its batch dimension
 * made symbolic. Uses onnx-proto (the ONNX protobuf schema compiled for protobufjs).
 */
import onnxProto from 'onnx-proto';
import { FmflError } from '../../util/errors.ts';
import type { ConstValue, IrAttr, IrNode, ConstDType } from './ir.ts';

const { onnx } = onnxProto;
type ITensorProto = Parameters<typeof onnx.TensorProto.create>[0] & object;
type IAttributeProto = Parameters<typeof onnx.AttributeProto.create>[0] & object;

/** Refuse files larger than this (protobuf's own 2 GiB limit; external-data models are refused separately). */
export const MAX_ONNX_BYTES = 2 ** 31 - 1;
/** At most this many nodes in the main graph. */
export const MAX_ONNX_NODES = 200_000;
/** Opsets the importer reads (the default domain). */
export const MIN_OPSET = 9;
export const MAX_OPSET = 21;

/** Why an import failed: a stable code plus, where there is one, the ONNX op and node it concerns. */
export type OnnxImportCode =
  /** Not an ONNX model, truncated, or over a limit. */
  | 'malformed'
  /** The opset, IR version or a custom domain is outside what the importer reads. */
  | 'version'
  /** An input dimension other than the batch is symbolic and no size was given. */
  | 'dynamic-shape'
  /** A node's op is not in the op table and has no mapping. */
  | 'unsupported-op'
  /** A supported op uses an attribute value or input form the mapping does not cover. */
  | 'unsupported-form'
  /** Exits, LoRA targets or the head do not fit the graph. */
  | 'structure'
  /** The imported forward disagrees with onnxruntime's run of the original file. */
  | 'mismatch';

/** The ONNX file cannot be imported; `op` and `node` name the culprit when there is one; the message says what to do. */
export class OnnxImportError extends FmflError {
  readonly reason: OnnxImportCode;
  readonly op?: string;
  readonly node?: string;
  constructor(reason: OnnxImportCode, message: string, where: { op?: string; node?: string } = {}) {
    super('ONNX_IMPORT', where.op ? `${where.op} node '${where.node ?? '?'}': ${message}` : message);
    this.reason = reason;
    this.op = where.op;
    this.node = where.node;
  }
}

export interface ParsedOnnx {
  nodes: IrNode[];
  /** Float initializers with more than one element: the model's weights (become frozen backbone tensors). */
  weights: Map<string, { shape: number[]; data: Float32Array }>;
  /** Integer, boolean and scalar initializers: folded as constants. */
  consts: Map<string, ConstValue>;
  input: { name: string; channels: number; size: number };
  outputs: string[];
  opset: number;
  producer: string;
}

const DTYPE_OF: Record<number, ConstDType> = { 1: 'float32', 6: 'int32', 7: 'int64', 9: 'bool', 11: 'float64' };

/** ONNX TensorProto data type code → the importer's dtype (float16 and others: undefined). */
export function dtypeOfCode(code: number): ConstDType | undefined {
  return DTYPE_OF[code];
}

const num = (v: number | { toNumber(): number }): number => (typeof v === 'number' ? v : v.toNumber());

/** Decode a TensorProto into shape + numbers. */
export function readTensor(t: ITensorProto, where: string): ConstValue {
  const dtype = DTYPE_OF[t.dataType ?? 0];
  if (!dtype) throw new OnnxImportError('unsupported-form', `${where}: tensor data type ${t.dataType} is not supported (float32, float64, int32, int64, bool); re-export the model in float32`);
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) throw new OnnxImportError('unsupported-form', `${where}: tensor data is stored in an external file; re-export with the weights inside the model (save_as_external_data=False)`);
  const shape = (t.dims ?? []).map(num);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new OnnxImportError('malformed', `${where}: invalid dims [${shape.join(',')}]`);
  const n = shape.reduce((a, b) => a * b, 1);
  let data: number[];
  const raw = t.rawData && t.rawData.length > 0 ? t.rawData : null;
  if (raw) {
    const width = { float32: 4, int32: 4, int64: 8, bool: 1, float64: 8 }[dtype];
    if (raw.length !== n * width) throw new OnnxImportError('malformed', `${where}: ${raw.length} bytes of data for ${n} ${dtype} values`);
    const buf = Uint8Array.from(raw).buffer;
    switch (dtype) {
      case 'float32': data = Array.from(new Float32Array(buf)); break;
      case 'float64': data = Array.from(new Float64Array(buf)); break;
      case 'int32': data = Array.from(new Int32Array(buf)); break;
      case 'int64': data = Array.from(new BigInt64Array(buf), (b) => Number(b)); break;
      case 'bool': data = Array.from(new Uint8Array(buf)); break;
    }
  } else {
    const src: (number | { toNumber(): number })[] =
      (dtype === 'float32' ? t.floatData : dtype === 'float64' ? t.doubleData : dtype === 'int64' ? t.int64Data : t.int32Data) ?? [];
    data = src.map(num);
    if (data.length !== n) throw new OnnxImportError('malformed', `${where}: ${data.length} values for dims [${shape.join(',')}]`);
  }
  return { dtype, shape, data };
}

function readAttr(a: IAttributeProto, where: string): IrAttr {
  const T = onnx.AttributeProto.AttributeType;
  switch (a.type) {
    case T.FLOAT: return a.f ?? 0;
    case T.INT: return num((a.i ?? 0) as number);
    case T.STRING: return new TextDecoder().decode(a.s ?? new Uint8Array());
    case T.FLOATS: return [...(a.floats ?? [])];
    case T.INTS: return (a.ints ?? []).map(num);
    case T.TENSOR: return { tensor: readTensor(a.t ?? {}, `${where} attribute ${a.name}`) };
    case T.STRINGS: return (a.strings ?? []).map((s) => new TextDecoder().decode(s)).join(',');
    default:
      throw new OnnxImportError('unsupported-form', `attribute '${a.name}' of type ${a.type} (subgraphs, sparse tensors) is not supported; export without control flow`, { node: where });
  }
}

/**
 * Parse an ONNX file. `inputSize` fixes symbolic spatial dimensions (height = width). The batch dimension may be
 * symbolic or fixed; it becomes the batch of every graph fmfl builds.
 * @throws OnnxImportError
 */
export function readOnnx(bytes: Uint8Array, opts: { inputSize?: number } = {}): ParsedOnnx {
  if (bytes.length > MAX_ONNX_BYTES) throw new OnnxImportError('malformed', `the file is ${bytes.length} bytes, over the ${MAX_ONNX_BYTES}-byte protobuf limit`);
  let model: InstanceType<typeof onnx.ModelProto>;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new OnnxImportError('malformed', `not an ONNX model (${(err as Error).message}); pass the .onnx file written by torch.onnx.export or another exporter`);
  }
  const g0 = model.graph;
  if (!g0) throw new OnnxImportError('malformed', 'the model has no graph; pass an exported ONNX model');
  const g = { node: g0.node ?? [], initializer: g0.initializer ?? [], input: g0.input ?? [], output: g0.output ?? [] };
  if (g.node.length === 0) throw new OnnxImportError('malformed', 'the model has no graph nodes; pass an exported ONNX model');
  if (g.node.length > MAX_ONNX_NODES) throw new OnnxImportError('malformed', `the graph has ${g.node.length} nodes, over the ${MAX_ONNX_NODES} limit`);
  const def = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  const opset = def ? num(def.version as number) : 0;
  if (opset < MIN_OPSET || opset > MAX_OPSET) throw new OnnxImportError('version', `opset ${opset} is outside ${MIN_OPSET}..${MAX_OPSET}; re-export with opset_version=17`);
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  const consts = new Map<string, ConstValue>();
  // Float tensors a node reads as arguments, not as weights (Resize's scales), stay constants.
  const args = new Set(g.node.filter((n) => n.opType === 'Resize').map((n) => (n.input ?? [])[(n.input ?? []).length === 2 ? 1 : 2]).filter((x): x is string => !!x));
  for (const t of g.initializer) {
    if (!t.name) throw new OnnxImportError('malformed', 'an initializer has no name');
    const v = readTensor(t, `initializer ${t.name}`);
    if ((v.dtype === 'float32' || v.dtype === 'float64') && v.data.length > 1 && !args.has(t.name)) weights.set(t.name, { shape: v.shape, data: Float32Array.from(v.data) });
    else consts.set(t.name, v);
  }
  const nodes: IrNode[] = g.node.map((n, i) => {
    const op = n.opType ?? '';
    const name = n.name || `node_${i}_${op}`;
    if (n.domain && n.domain !== 'ai.onnx') throw new OnnxImportError('unsupported-op', `custom domain '${n.domain}' is not supported; export with standard ONNX ops only`, { op, node: name });
    const attrs: Record<string, IrAttr> = {};
    for (const a of n.attribute ?? []) attrs[a.name ?? ''] = readAttr(a, name);
    return { op, name, inputs: [...(n.input ?? [])], outputs: [...(n.output ?? [])], attrs };
  });
  // Some exporters (paddle2onnx, older opsets) store weights as Constant nodes: float tensors with more than one
  // value become weights like initializers, so they are frozen backbone tensors, not graph constants.
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    const v = n.op === 'Constant' && n.attrs.value && typeof n.attrs.value === 'object' && 'tensor' in n.attrs.value ? n.attrs.value.tensor : null;
    if (v && (v.dtype === 'float32' || v.dtype === 'float64') && v.data.length > 1 && n.outputs[0] && !args.has(n.outputs[0])) {
      weights.set(n.outputs[0], { shape: v.shape, data: Float32Array.from(v.data) });
      nodes.splice(i, 1);
    }
  }
  const inputs = g.input.filter((v) => !weights.has(v.name ?? '') && !consts.has(v.name ?? ''));
  if (inputs.length !== 1) throw new OnnxImportError('structure', `the graph has ${inputs.length} data inputs (${inputs.map((v) => v.name).join(', ')}); an image model takes exactly one [batch, channels, height, width] input`);
  const inp = { ...inputs[0], name: inputs[0].name ?? '' };
  const tt = inp.type?.tensorType;
  if (!tt || tt.elemType !== 1) throw new OnnxImportError('structure', `input ${inp.name} must be a float32 tensor`);
  const dims = tt.shape?.dim ?? [];
  if (dims.length !== 4) throw new OnnxImportError('structure', `input ${inp.name} has rank ${dims.length}; an image model takes [batch, channels, height, width]`);
  const fixed = dims.map((d) => (d.dimValue !== undefined && d.dimValue !== null && num(d.dimValue as number) > 0 ? num(d.dimValue as number) : null));
  const channels = fixed[1];
  if (channels === null) throw new OnnxImportError('dynamic-shape', `input ${inp.name}: the channel dimension '${dims[1].dimParam ?? '?'}' is symbolic and cannot be fixed; re-export with a fixed channel count`);
  let [h, w] = [fixed[2], fixed[3]];
  if (h === null || w === null) {
    if (!opts.inputSize) throw new OnnxImportError('dynamic-shape', `input ${inp.name}: the spatial dimensions [${dims.slice(2).map((d) => d.dimParam || d.dimValue).join(', ')}] are symbolic; pass --input-size <pixels> to fix them, or re-export with a fixed size`);
    h ??= opts.inputSize;
    w ??= opts.inputSize;
  }
  if (h !== w) throw new OnnxImportError('structure', `input ${inp.name} is ${h}x${w}; fmfl feeds square images (size x size)`);
  const names = new Set([inp.name, ...weights.keys(), ...consts.keys()]);
  for (const n of nodes) {
    for (const x of n.inputs) if (x && !names.has(x)) throw new OnnxImportError('malformed', `input '${x}' is produced by no earlier node; the graph must be topologically sorted`, { op: n.op, node: n.name });
    for (const y of n.outputs) if (y) names.add(y);
  }
  const outputs = g.output.map((o) => o.name ?? '');
  return { nodes, weights, consts, input: { name: inp.name, channels, size: h }, outputs, opset, producer: `${model.producerName ?? ''} ${model.producerVersion ?? ''}`.trim() };
}
