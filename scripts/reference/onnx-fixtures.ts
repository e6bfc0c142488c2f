/**
 * ONNX fixtures shaped the way PyTorch's exporter (torch.onnx.export, opset 17, eval mode) writes them, for the
 * importer's tests and demos where no PyTorch is at hand: a symbolic batch dimension (`batch_size`), the dynamic
 * shape plumbing (Shape → Gather → Unsqueeze → Concat → Reshape, ConstantOfShape, Equal/Where over constants, Cast,
 * integer Div), Constant nodes, node names by module path (`/blocks.0/attn/qkv/MatMul`), MatMul weights stored
 * pre-transposed as `onnx::MatMul_NNN` initializers, biases and norms under their parameter names.
 *
 * - {@link tinyVitOnnx}: a timm-style ViT (Conv patch embedding, CLS token expanded over the batch, learned
 *   positions, pre-norm blocks with a fused qkv Linear, Erf-form GELU, Softmax on axis -1, final LayerNorm, token 0
 *   to a Gemm head).
 * - {@link tinyResNetOnnx}: a ResNet-like CNN (Conv, BatchNormalization, Relu, MaxPool, residual blocks, one with
 *   Clip as ReLU6, GlobalAveragePool, Flatten, Gemm).
 * Weights are seeded uniform draws (PyTorch's default init bounds); the same seed gives the same bytes.
 */
import onnxProto from 'onnx-proto';
import { Rng } from '../../src/util/rng.ts';

const { onnx } = onnxProto;
type NodeProto = InstanceType<typeof onnx.NodeProto>;
type TensorProto = InstanceType<typeof onnx.TensorProto>;
type Attr = number | number[] | string | { tensor: TensorProto } | { float: number };

const FLOAT = 1;
const INT64 = 7;

/** Writes nodes and initializers with PyTorch's naming. */
export class TorchLikeOnnx {
  readonly nodes: NodeProto[] = [];
  readonly inits: TensorProto[] = [];
  private matmulId = 100;
  private constId = 0;
  private readonly rng: Rng;
  constructor(seed: number) {
    this.rng = new Rng(seed);
  }

  /** One node named `<scope>/<Op>[_k]`, outputs `<name>_output_<i>`. */
  node(scope: string, op: string, inputs: string[], attrs: Record<string, Attr> = {}, outputs = 1, suffix = ''): string[] {
    const name = `${scope}/${op}${suffix}`;
    if (this.nodes.some((n) => n.name === name)) return this.node(scope, op, inputs, attrs, outputs, `_${Number(suffix.slice(1) || 0) + 1}`);
    const outs = Array.from({ length: outputs }, (_, i) => `${name}_output_${i}`);
    this.nodes.push(onnx.NodeProto.create({ name, opType: op, input: inputs, output: outs, attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)) }));
    return outs;
  }

  one(scope: string, op: string, inputs: string[], attrs: Record<string, Attr> = {}): string {
    return this.node(scope, op, inputs, attrs)[0];
  }

  /** A Constant node holding int64 values (shape [] when `scalar`). */
  i64(scope: string, values: number[], scalar = false): string {
    const t = onnx.TensorProto.create({ dims: scalar ? [] : [values.length], dataType: INT64, rawData: bytes(BigInt64Array.from(values.map(BigInt))) });
    return this.one(scope, 'Constant', [], { value: { tensor: t } });
  }

  /** A Constant node holding one float32 scalar. */
  f32(scope: string, value: number): string {
    const t = onnx.TensorProto.create({ dims: [], dataType: FLOAT, rawData: bytes(Float32Array.of(value)) });
    return this.one(scope, 'Constant', [], { value: { tensor: t } });
  }

  /** A Constant node holding a 1-D float32 tensor. */
  f32s(scope: string, values: number[]): string {
    const t = onnx.TensorProto.create({ dims: [values.length], dataType: FLOAT, rawData: bytes(Float32Array.from(values)) });
    return this.one(scope, 'Constant', [], { value: { tensor: t } });
  }

  /** A float initializer with values drawn uniformly from [-bound, bound] (or filled with `fill`). */
  weight(name: string, shape: number[], bound: number, fill?: number): string {
    const n = shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = fill ?? this.rng.uniform(-bound, bound);
    this.inits.push(onnx.TensorProto.create({ name, dims: shape, dataType: FLOAT, rawData: bytes(a) }));
    return name;
  }

  /** nn.Linear on a rank-3 input, as the exporter writes it: MatMul with a pre-transposed `onnx::MatMul_NNN`, then Add. */
  linear3(scope: string, x: string, fin: number, fout: number, param: string): string {
    const w = this.weight(`onnx::MatMul_${this.matmulId++}`, [fin, fout], 1 / Math.sqrt(fin));
    const b = this.weight(`${param}.bias`, [fout], 1 / Math.sqrt(fin));
    return this.one(scope, 'Add', [this.one(scope, 'MatMul', [x, w]), b]);
  }

  /** nn.Linear on a rank-2 input: Gemm(transB 1) with the weight [out, in] under its parameter name. */
  gemm(scope: string, x: string, fin: number, fout: number, param: string): string {
    const w = this.weight(`${param}.weight`, [fout, fin], 1 / Math.sqrt(fin));
    const b = this.weight(`${param}.bias`, [fout], 1 / Math.sqrt(fin));
    return this.one(scope, 'Gemm', [x, w, b], { alpha: { float: 1 }, beta: { float: 1 }, transB: 1 });
  }

  layerNorm(scope: string, x: string, d: number, param: string, eps: number): string {
    const w = this.weight(`${param}.weight`, [d], 0, 1);
    const b = this.weight(`${param}.bias`, [d], 0, 0);
    // Non-trivial affine parameters, as a pretrained model would have.
    perturb(this.inits.at(-2)!, this.rng, 0.2, 1);
    perturb(this.inits.at(-1)!, this.rng, 0.1, 0);
    return this.one(scope, 'LayerNormalization', [x, w, b], { axis: -1, epsilon: { float: eps } });
  }

  /** `x.shape[i]` as a 1-D int64 tensor: Shape → Gather(i) → Unsqueeze(0). */
  dim(scope: string, x: string, i: number): string {
    const s = this.one(scope, 'Shape', [x]);
    const g = this.one(scope, 'Gather', [s, this.i64(scope, [i], true)], { axis: 0 });
    return this.one(scope, 'Unsqueeze', [g, this.i64(scope, [0])]);
  }

  model(input: { name: string; channels: number; size: number }, output: { name: string; classes: number }): Uint8Array {
    const dims = (rest: number[]) => ({ dim: [{ dimParam: 'batch_size' }, ...rest.map((d) => ({ dimValue: d }))] });
    const m = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'pytorch',
      producerVersion: '1.13.1',
      opsetImport: [{ domain: '', version: 17 }],
      graph: onnx.GraphProto.create({
        name: 'torch_jit',
        node: this.nodes,
        initializer: this.inits,
        input: [{ name: input.name, type: { tensorType: { elemType: FLOAT, shape: dims([input.channels, input.size, input.size]) } } }],
        output: [{ name: output.name, type: { tensorType: { elemType: FLOAT, shape: dims([output.classes]) } } }],
      }),
    });
    return onnx.ModelProto.encode(m).finish();
  }
}

function bytes(a: Float32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

function perturb(t: TensorProto, rng: Rng, scale: number, base: number): void {
  const a = new Float32Array(t.rawData!.slice().buffer);
  for (let i = 0; i < a.length; i++) a[i] = base + rng.uniform(-scale, scale);
  t.rawData = bytes(a);
}

function attribute(name: string, v: Attr): InstanceType<typeof onnx.AttributeProto> {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') return onnx.AttributeProto.create({ name, type: T.INT, i: v });
  if (typeof v === 'string') return onnx.AttributeProto.create({ name, type: T.STRING, s: new TextEncoder().encode(v) });
  if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: T.INTS, ints: v });
  if ('float' in v) return onnx.AttributeProto.create({ name, type: T.FLOAT, f: v.float });
  return onnx.AttributeProto.create({ name, type: T.TENSOR, t: v.tensor });
}

export interface TinyVitOptions {
  image?: number;
  channels?: number;
  patch?: number;
  dim?: number;
  depth?: number;
  heads?: number;
  mlp?: number;
  classes?: number;
  seed?: number;
  /**
   * `fused` (one qkv Linear indexed as `qkv[0], qkv[1], qkv[2]`, default), `unbind` (one qkv Linear split by
   * timm's `qkv.unbind(0)`, which exports as Split + Squeeze) or `separate` q, k, v Linears (the reference ViT).
   */
  qkv?: 'fused' | 'unbind' | 'separate';
  /** Put an op the importer does not know on block 0's path (to test its error), as node `/blocks.0/<op>`. */
  unsupportedOp?: string;
}

/** A timm-style ViT exported like torch.onnx.export does (see the module comment). */
export function tinyVitOnnx(o: TinyVitOptions = {}): Uint8Array {
  const { image = 28, channels = 1, patch = 7, dim = 32, depth = 3, heads = 2, mlp = 64, classes = 10, seed = 1 } = o;
  const w = new TorchLikeOnnx(seed);
  const hd = dim / heads;
  const np = (image / patch) ** 2;
  // Patch embedding: Conv, then flatten(2).transpose(1, 2).
  const pw = w.weight('patch_embed.proj.weight', [dim, channels, patch, patch], 1 / Math.sqrt(channels * patch * patch));
  const pb = w.weight('patch_embed.proj.bias', [dim], 1 / Math.sqrt(channels * patch * patch));
  const conv = w.one('/patch_embed/proj', 'Conv', ['input', pw, pb], { dilations: [1, 1], group: 1, kernel_shape: [patch, patch], pads: [0, 0, 0, 0], strides: [patch, patch] });
  const s2 = w.one('/patch_embed', 'Slice', [w.one('/patch_embed', 'Shape', [conv]), w.i64('/patch_embed', [0]), w.i64('/patch_embed', [2]), w.i64('/patch_embed', [0])]);
  const flatShape = w.one('/patch_embed', 'Concat', [s2, w.i64('/patch_embed', [-1])], { axis: 0 });
  const tokens = w.one('/patch_embed', 'Transpose', [w.one('/patch_embed', 'Reshape', [conv, flatShape]), ], { perm: [0, 2, 1] });
  // cls_token.expand(B, -1, -1): Concat(B, -1, -1), then Where(Equal(shape, -1), 1, shape) over ConstantOfShape.
  const cls = w.weight('cls_token', [1, 1, dim], 0.02);
  const B = w.dim('', 'input', 0);
  const shp = w.one('', 'Concat', [B, w.i64('', [-1]), w.i64('', [-1])], { axis: 0 });
  const ones = w.one('', 'ConstantOfShape', [w.i64('', [3])], { value: { tensor: onnx.TensorProto.create({ dims: [1], dataType: INT64, rawData: bytes(BigInt64Array.of(1n)) }) } });
  const minus = w.one('', 'Mul', [ones, w.i64('', [-1], true)]);
  const fixed = w.one('', 'Where', [w.one('', 'Equal', [shp, minus]), ones, shp]);
  const clsB = w.one('', 'Expand', [cls, fixed]);
  const pos = w.weight('pos_embed', [1, np + 1, dim], 0.02);
  let x = w.one('', 'Add', [w.one('', 'Concat', [clsB, tokens], { axis: 1 }), pos]);
  for (let i = 0; i < depth; i++) {
    const p = `/blocks.${i}`;
    const h1 = w.layerNorm(`${p}/norm1`, x, dim, `blocks.${i}.norm1`, 1e-6);
    // Attention: B, N, C = x.shape; qkv(x).reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4).
    const a = `${p}/attn`;
    const Bq = w.dim(a, h1, 0);
    const Nq = w.dim(a, h1, 1);
    const Cdim = w.one(a, 'Gather', [w.one(a, 'Shape', [h1]), w.i64(a, [2], true)], { axis: 0 });
    const hdv = w.one(a, 'Cast', [w.one(a, 'Div', [Cdim, w.i64(a, [heads], true)])], { to: INT64 });
    let q: string, k: string, v: string;
    if ((o.qkv ?? 'fused') !== 'separate') {
      const qkvShape = w.one(a, 'Concat', [Bq, Nq, w.i64(a, [3]), w.i64(a, [heads]), w.one(a, 'Unsqueeze', [hdv, w.i64(a, [0])])], { axis: 0 });
      const qkv = w.linear3(`${a}/qkv`, h1, dim, 3 * dim, `blocks.${i}.attn.qkv`);
      const perm = w.one(a, 'Transpose', [w.one(a, 'Reshape', [qkv, qkvShape])], { perm: [2, 0, 3, 1, 4] });
      if (o.qkv === 'unbind') {
        const parts = w.node(a, 'Split', [perm, w.i64(a, [1, 1, 1])], { axis: 0 }, 3);
        [q, k, v] = parts.map((t) => w.one(a, 'Squeeze', [t, w.i64(a, [0])]));
      } else [q, k, v] = [0, 1, 2].map((j) => w.one(a, 'Gather', [perm, w.i64(a, [j], true)], { axis: 0 }));
    } else {
      // q(x).reshape(B, N, heads, C // heads).transpose(1, 2), likewise k and v.
      const headShape = w.one(a, 'Concat', [Bq, Nq, w.i64(a, [heads]), w.one(a, 'Unsqueeze', [hdv, w.i64(a, [0])])], { axis: 0 });
      [q, k, v] = ['q', 'k', 'v'].map((nm) => w.one(a, 'Transpose', [w.one(a, 'Reshape', [w.linear3(`${a}/${nm}`, h1, dim, dim, `blocks.${i}.attn.${nm}`), headShape])], { perm: [0, 2, 1, 3] }));
    }
    const scores = w.one(a, 'Mul', [w.one(a, 'MatMul', [q, w.one(a, 'Transpose', [k], { perm: [0, 1, 3, 2] })]), w.f32(a, 1 / Math.sqrt(hd))]);
    const probs = w.one(a, 'Softmax', [scores], { axis: -1 });
    const ctx = w.one(a, 'Transpose', [w.one(a, 'MatMul', [probs, v])], { perm: [0, 2, 1, 3] });
    const mergedShape = w.one(a, 'Concat', [w.dim(a, h1, 0), w.dim(a, h1, 1), w.dim(a, h1, 2)], { axis: 0 });
    let merged = w.one(a, 'Reshape', [ctx, mergedShape]);
    if (i === 0 && o.unsupportedOp) merged = w.one(p, o.unsupportedOp, [merged]);
    x = w.one(p, 'Add', [x, w.linear3(`${a}/proj`, merged, dim, dim, `blocks.${i}.attn.proj`)]);
    const h2 = w.layerNorm(`${p}/norm2`, x, dim, `blocks.${i}.norm2`, 1e-6);
    const f1 = w.linear3(`${p}/mlp/fc1`, h2, dim, mlp, `blocks.${i}.mlp.fc1`);
    // GELU (exact) as the exporter writes it: x * 0.5 * (1 + erf(x / sqrt 2)).
    const g = `${p}/mlp/act`;
    const erf = w.one(g, 'Erf', [w.one(g, 'Div', [f1, w.f32(g, Math.SQRT2)])]);
    const act = w.one(g, 'Mul', [w.one(g, 'Mul', [f1, w.one(g, 'Add', [erf, w.f32(g, 1)])]), w.f32(g, 0.5)]);
    x = w.one(p, 'Add', [x, w.linear3(`${p}/mlp/fc2`, act, mlp, dim, `blocks.${i}.mlp.fc2`)]);
  }
  const n = w.layerNorm('/norm', x, dim, 'norm', 1e-6);
  const tok0 = w.one('', 'Gather', [n, w.i64('', [0], true)], { axis: 1 });
  const logits = w.gemm('/head', tok0, dim, classes, 'head');
  w.nodes.push(onnx.NodeProto.create({ name: '/Identity', opType: 'Identity', input: [logits], output: ['logits'] }));
  return w.model({ name: 'input', channels, size: image }, { name: 'logits', classes });
}

export interface TinyResNetOptions {
  image?: number;
  channels?: number;
  width?: number;
  blocks?: number;
  classes?: number;
  seed?: number;
  /** The stem's pooling: `max` (MaxPool, default) or `avg` (AveragePool 3x3 / 2, padded, count_include_pad=1). */
  pool?: 'max' | 'avg';
  /**
   * A Resize after the stem's pooling (as F.interpolate exports it: roi empty, constant scales or sizes for all four
   * axes): `mode`, `transform` (coordinate_transformation_mode), `nearest` (nearest_mode).
   */
  resize?: { mode: 'nearest' | 'linear' | 'cubic'; transform: string; nearest?: string; scales?: number[]; sizes?: number[] };
}

/** A ResNet-like CNN exported like torch.onnx.export with BatchNorm kept (see the module comment). */
export function tinyResNetOnnx(o: TinyResNetOptions = {}): Uint8Array {
  const { image = 32, channels = 3, width = 16, blocks = 2, classes = 10, seed = 2 } = o;
  const w = new TorchLikeOnnx(seed);
  const conv = (scope: string, x: string, cin: number, cout: number, k: number, stride: number, param: string): string => {
    const wt = w.weight(`${param}.weight`, [cout, cin, k, k], 1 / Math.sqrt(cin * k * k));
    return w.one(scope, 'Conv', [x, wt], { dilations: [1, 1], group: 1, kernel_shape: [k, k], pads: Array(4).fill((k - 1) / 2), strides: [stride, stride] });
  };
  const bn = (scope: string, x: string, c: number, param: string): string => {
    const g = w.weight(`${param}.weight`, [c], 0.3);
    const b = w.weight(`${param}.bias`, [c], 0.1);
    const m = w.weight(`${param}.running_mean`, [c], 0.2);
    const v = w.weight(`${param}.running_var`, [c], 0.3);
    perturb(w.inits.at(-4)!, new Rng(seed + c), 0.3, 1);
    perturb(w.inits.at(-1)!, new Rng(seed + c + 1), 0.3, 1);
    void g; void b; void m; void v;
    return w.one(scope, 'BatchNormalization', [x, `${param}.weight`, `${param}.bias`, `${param}.running_mean`, `${param}.running_var`], { epsilon: { float: 1e-5 }, momentum: { float: 0.9 } });
  };
  let x = w.one('/relu', 'Relu', [bn('/bn1', conv('/conv1', 'input', channels, width, 3, 1, 'conv1'), width, 'bn1')]);
  x = o.pool === 'avg'
    ? w.one('/avgpool', 'AveragePool', [x], { ceil_mode: 0, count_include_pad: 1, kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] })
    : w.one('/maxpool', 'MaxPool', [x], { ceil_mode: 0, kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] });
  if (o.resize) {
    const r = o.resize;
    const attrs: Record<string, Attr> = { mode: r.mode, coordinate_transformation_mode: r.transform, ...(r.nearest ? { nearest_mode: r.nearest } : {}) };
    const scales = r.scales ? w.f32s('/Resize', r.scales) : '';
    x = w.one('', 'Resize', r.sizes ? [x, '', '', w.i64('/Resize', r.sizes)] : [x, '', scales], attrs);
  }
  for (let i = 0; i < blocks; i++) {
    const p = `/layer1/layer1.${i}`;
    const q = `layer1.${i}`;
    let y = w.one(`${p}/relu`, 'Relu', [bn(`${p}/bn1`, conv(`${p}/conv1`, x, width, width, 3, 1, `${q}.conv1`), width, `${q}.bn1`)]);
    y = bn(`${p}/bn2`, conv(`${p}/conv2`, y, width, width, 3, 1, `${q}.conv2`), width, `${q}.bn2`);
    const sum = w.one(p, 'Add', [y, x]);
    // The last block uses ReLU6 (Clip 0..6), as MobileNet-style blocks do.
    x = i === blocks - 1 ? w.one(`${p}/relu_1`, 'Clip', [sum, w.f32(`${p}/relu_1`, 0), w.f32(`${p}/relu_1`, 6)]) : w.one(`${p}/relu_1`, 'Relu', [sum]);
  }
  const pooled = w.one('/avgpool', 'GlobalAveragePool', [x]);
  const flat = w.one('', 'Flatten', [pooled], { axis: 1 });
  const logits = w.gemm('/fc', flat, width, classes, 'fc');
  w.nodes.push(onnx.NodeProto.create({ name: '/Identity', opType: 'Identity', input: [logits], output: ['logits'] }));
  return w.model({ name: 'input', channels, size: image }, { name: 'logits', classes });
}
