/**
 * The importer's graph rewrites (src/model/onnx/fuse-attention.ts, fuse-gelu-linear.ts, fuse-layernorm-linear.ts,
 * fold-batchnorm.ts): the rewritten graph's forward and gradients equal the unrewritten graph's, and chains the
 * rewrite must not touch are left alone.
 */
import test from 'ava';
import { tinyVitOnnx } from '../../scripts/reference/onnx-fixtures.ts';
import { prepareImport } from '../../src/model/onnx/import.ts';
import { readOnnx } from '../../src/model/onnx/read.ts';
import { fuseGelu } from '../../src/model/onnx/fuse.ts';
import { ATTENTION_OP, fuseAttention } from '../../src/model/onnx/fuse-attention.ts';
import { GELU_LINEAR_OP, fuseGeluLinear } from '../../src/model/onnx/fuse-gelu-linear.ts';
import { LAYERNORM_LINEAR_OP, fuseLayerNormLinear, fusedMatMuls, unfuseLayerNormLinear } from '../../src/model/onnx/fuse-layernorm-linear.ts';
import { foldBatchNorm } from '../../src/model/onnx/fold-batchnorm.ts';
import { loraCandidates } from '../../src/model/onnx/structure.ts';
import type { ImportedGraph, IrNode } from '../../src/model/onnx/ir.ts';
import type { Weights } from '../../src/model/vit.ts';
import { importedLossAndGrads, worstRel } from '../imported-grads.ts';

const LORA = { rank: 2, alpha: 4, targets: ['q'] as ['q'] };

/** Loss (a fixed random projection of every exit tensor) and its gradients wrt the images and every LoRA factor. */
const lossAndGrads = (ir: ImportedGraph, weights: Weights, seed: number): Promise<Record<string, Float32Array>> => importedLossAndGrads(ir, weights, { batch: 2, seed });

test('the attention, GELU-Linear and LayerNorm-Linear rewrites: per block one fmfl.Attention, one fmfl.GeluLinear and two fmfl.LayerNormLinear; forward and gradients equal the unrewritten graph; a deliberate break is caught', async (t) => {
  for (const qkv of ['fused', 'separate'] as const) {
    const bytes = tinyVitOnnx({ qkv, seed: 5 });
    const { ir, weights } = prepareImport(bytes, { loraTargets: qkv === 'fused' ? 'attn/qkv/|mlp/fc2/' : 'attn/(q|v)/' });
    t.is(ir.nodes.filter((n) => n.op === ATTENTION_OP).length, 3, qkv);
    t.is(ir.nodes.filter((n) => n.op === 'Softmax').length, 0, qkv);
    t.is(ir.nodes.filter((n) => n.op === GELU_LINEAR_OP).length, 3, qkv);
    t.is(ir.nodes.filter((n) => n.op === 'Gelu').length, 0, qkv);
    // norm1 (read by q, k, v or qkv) and norm2 (read by fc1) per block; the final norm feeds the CLS slice, not a Linear.
    const lnl = ir.nodes.filter((n) => n.op === LAYERNORM_LINEAR_OP);
    t.is(lnl.length, 6, qkv);
    t.is(ir.nodes.filter((n) => n.op === 'LayerNormalization').length, 1, qkv);
    t.deepEqual(lnl.map((n) => fusedMatMuls(n).length), qkv === 'fused' ? [1, 1, 1, 1, 1, 1] : [3, 1, 3, 1, 3, 1], qkv);
    t.true(ir.lora.every((s) => !s.node.endsWith('LayerNormalization')), 'LoRA sites stay on the MatMul names');
    // fused: LoRA on qkv and on fc2 (inside GeluLinear, so its merged weight's gradient is checked too); separate: q, v.
    t.is(ir.lora.length, 6, qkv);
    const parsed = readOnnx(bytes);
    const plain: ImportedGraph = { ...ir, nodes: fuseGelu(parsed.nodes, parsed.consts, parsed.outputs), consts: Object.fromEntries(parsed.consts) };
    t.is(plain.nodes.filter((n) => n.op === 'Softmax').length, 3);
    t.is(plain.nodes.filter((n) => n.op === 'LayerNormalization').length, 7);
    const [a, b] = [await lossAndGrads(ir, weights, 1), await lossAndGrads(plain, weights, 1)];
    t.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
    const same = worstRel(a, b);
    t.true(same.rel < 1e-4, `${qkv} ${same.key}: max |rewritten - plain| / max |plain| ${same.rel}`);
    // A deliberate break the comparison must catch: each LayerNorm-Linear's maps listed in reverse, so a map's LoRA is
    // merged into another map's weight (separate q/k/v: q's factors onto v), or its epsilon off by 10^4 (fused qkv).
    const broken: ImportedGraph = {
      ...ir,
      nodes: ir.nodes.map((n) => (n.op !== LAYERNORM_LINEAR_OP ? n : qkv === 'separate' ? { ...n, attrs: { ...n.attrs, matmuls: JSON.stringify(fusedMatMuls(n).reverse()) } } : { ...n, attrs: { ...n.attrs, epsilon: (n.attrs.epsilon as number) * 1e4 } })),
    };
    const bad = worstRel(await lossAndGrads(broken, weights, 1), b);
    t.true(bad.rel > 1e-3, `${qkv}: the broken rewrite differs by only ${bad.rel}`);
  }
});

const node = (op: string, inputs: string[], outputs: string[], attrs: IrNode['attrs'] = {}): IrNode => ({ op, name: `/${outputs[0]}`, inputs, outputs, attrs });
const chain = (): IrNode[] => [
  node('Transpose', ['k'], ['kt'], { perm: [0, 1, 3, 2] }),
  node('MatMul', ['q', 'kt'], ['s']),
  node('Mul', ['s', 'c'], ['s2']),
  node('Softmax', ['s2'], ['p'], { axis: -1 }),
  node('MatMul', ['p', 'v'], ['o']),
];
const C = new Map([['c', { dtype: 'float32' as const, shape: [], data: [0.25] }]]);

test('the attention rewrite folds the scale, keeps a composed head transpose and leaves shared intermediates alone', (t) => {
  const fused = fuseAttention(chain(), C, ['o']);
  t.is(fused.length, 1);
  t.like(fused[0], { op: ATTENTION_OP, inputs: ['q', 'k', 'v'], outputs: ['o'], attrs: { scale: 0.25, axis: -1 } });
  // Div by 4 is the same scale; a k transpose composed with the head transpose keeps a Transpose with the swap undone.
  const div = chain().map((n) => (n.op === 'Mul' ? { ...n, op: 'Div', inputs: ['s', 'c4'] } : n.op === 'Transpose' ? { ...n, attrs: { perm: [0, 2, 3, 1] } } : n));
  const f2 = fuseAttention(div, new Map([['c4', { dtype: 'float32' as const, shape: [], data: [4] }]]), ['o']);
  t.deepEqual(f2.map((n) => n.op), ['Transpose', ATTENTION_OP]);
  t.deepEqual(f2[0].attrs.perm, [0, 2, 1, 3]);
  t.is(f2[1].attrs.scale, 0.25);
  // The probabilities are also a graph output (or read by another node): nothing changes.
  t.deepEqual(fuseAttention(chain(), C, ['o', 'p']), chain());
  // A non-constant scale: nothing changes.
  t.deepEqual(fuseAttention(chain(), new Map(), ['o']), chain());
});

test('the GELU-Linear rewrite keeps the MatMul name (a LoRA candidate as before) and leaves a shared GELU alone', (t) => {
  const nodes = (): IrNode[] => [
    { op: 'Gelu', name: '/mlp/act/Gelu', inputs: ['h'], outputs: ['a'], attrs: {} },
    { op: 'MatMul', name: '/mlp/fc2/MatMul', inputs: ['a', 'W'], outputs: ['m'], attrs: {} },
    { op: 'Add', name: '/mlp/fc2/Add', inputs: ['b', 'm'], outputs: ['y'], attrs: {} },
  ];
  const W = new Set(['W', 'b']);
  const f = fuseGeluLinear(nodes(), new Map(), ['y'], W);
  t.deepEqual(f, [{ op: GELU_LINEAR_OP, name: '/mlp/fc2/MatMul', inputs: ['h', 'W', 'b'], outputs: ['y'], attrs: {} }]);
  t.deepEqual(loraCandidates({ nodes: f, weights: [{ name: 'fc2.weight', onnx: 'W', shape: [8, 4] }] }).map((c) => [c.op, c.node, c.in, c.out]), [['MatMul', '/mlp/fc2/MatMul', 8, 4]]);
  // The GELU output also read elsewhere, a weight that is not constant, or the tanh approximation: nothing changes.
  t.deepEqual(fuseGeluLinear(nodes(), new Map(), ['y', 'a'], W), nodes());
  t.deepEqual(fuseGeluLinear(nodes(), new Map(), ['y'], new Set(['b'])), nodes());
  const tanh = nodes().map((n) => (n.op === 'Gelu' ? { ...n, attrs: { approximate: 'tanh' } } : n));
  t.deepEqual(fuseGeluLinear(tanh, new Map(), ['y'], W), tanh);
});

test('the LayerNorm-Linear rewrite keeps every MatMul name (each a LoRA candidate as before) and leaves a LayerNorm with another reader alone', (t) => {
  const nodes = (): IrNode[] => [
    { op: 'LayerNormalization', name: '/blk/norm1/LayerNormalization', inputs: ['x', 'g', 'be'], outputs: ['h'], attrs: { axis: -1, epsilon: 1e-6 } },
    { op: 'MatMul', name: '/blk/attn/q/MatMul', inputs: ['h', 'Wq'], outputs: ['mq'], attrs: {} },
    { op: 'Add', name: '/blk/attn/q/Add', inputs: ['bq', 'mq'], outputs: ['q'], attrs: {} },
    { op: 'MatMul', name: '/blk/attn/v/MatMul', inputs: ['h', 'Wv'], outputs: ['mv'], attrs: {} },
    { op: 'Add', name: '/blk/attn/v/Add', inputs: ['mv', 'bv'], outputs: ['v'], attrs: {} },
    { op: 'Mul', name: '/blk/Mul', inputs: ['q', 'v'], outputs: ['y'], attrs: {} },
  ];
  const W = new Set(['g', 'be', 'Wq', 'bq', 'Wv', 'bv']);
  const f = fuseLayerNormLinear(nodes(), new Map(), ['y'], W);
  t.deepEqual(f.map((n) => n.op), [LAYERNORM_LINEAR_OP, 'Mul']);
  t.like(f[0], { name: '/blk/norm1/LayerNormalization', inputs: ['x', 'g', 'be', 'Wq', 'bq', 'Wv', 'bv'], outputs: ['q', 'v'], attrs: { epsilon: 1e-6, count: 2 } });
  t.deepEqual(fusedMatMuls(f[0]), ['/blk/attn/q/MatMul', '/blk/attn/v/MatMul']);
  // Undone (what bench:import times against): LayerNorm, then MatMul under its own name and Add per map.
  const un = unfuseLayerNormLinear(f);
  t.deepEqual(un.map((n) => [n.op, n.name]), [['LayerNormalization', '/blk/norm1/LayerNormalization'], ['MatMul', '/blk/attn/q/MatMul'], ['Add', '/blk/attn/q/MatMul::bias'], ['MatMul', '/blk/attn/v/MatMul'], ['Add', '/blk/attn/v/MatMul::bias'], ['Mul', '/blk/Mul']]);
  t.deepEqual(fuseLayerNormLinear(un, new Map(), ['y'], W), f);
  const weights = [{ name: 'q.weight', onnx: 'Wq', shape: [8, 4] }, { name: 'v.weight', onnx: 'Wv', shape: [8, 6] }];
  t.deepEqual(loraCandidates({ nodes: f, weights }).map((c) => [c.node, c.weight, c.prefix, c.in, c.out]), [['/blk/attn/q/MatMul', 'Wq', 'blk.attn.q', 8, 4], ['/blk/attn/v/MatMul', 'Wv', 'blk.attn.v', 8, 6]]);
  t.deepEqual(loraCandidates({ nodes: f, weights }), loraCandidates({ nodes: nodes(), weights }));
  // A Shape reader of the normalized output (the exporter's `B, N, C = x.shape`) reads the LayerNorm's input instead.
  const withShape = fuseLayerNormLinear([...nodes(), { op: 'Shape', name: '/s', inputs: ['h'], outputs: ['sh'], attrs: {} }], new Map(), ['y', 'sh'], W);
  t.deepEqual(withShape.map((n) => [n.op, n.inputs[0]]), [[LAYERNORM_LINEAR_OP, 'x'], ['Mul', 'q'], ['Shape', 'x']]);
  // The normalized output also read elsewhere (a graph output, or a non-Linear reader), a weight that is not
  // constant, a MatMul output read twice, or a Linear whose output is a graph output: nothing changes.
  t.deepEqual(fuseLayerNormLinear(nodes(), new Map(), ['y', 'h'], W), nodes());
  t.deepEqual(fuseLayerNormLinear([...nodes(), { op: 'Relu', name: '/r', inputs: ['h'], outputs: ['r'], attrs: {} }], new Map(), ['y', 'r'], W).map((n) => n.op)[0], 'LayerNormalization');
  t.deepEqual(fuseLayerNormLinear(nodes(), new Map(), ['y'], new Set([...W].filter((w) => w !== 'Wv'))), nodes());
  t.deepEqual(fuseLayerNormLinear(nodes(), new Map(), ['y', 'mq'], W), nodes());
  t.deepEqual(fuseLayerNormLinear(nodes(), new Map(), ['y', 'q'], W), nodes());
  // Mean / InvStdDev outputs requested: nothing changes.
  const stats = nodes().map((n, i) => (i === 0 ? { ...n, outputs: ['h', 'mean'] } : n));
  t.deepEqual(fuseLayerNormLinear(stats, new Map(), ['y', 'mean'], W), stats);
});

test('the BatchNorm fold: W·k and (b − mean)·k + B per output channel; left alone when anything else can see the Conv output or the parameters', (t) => {
  const nodes = (): IrNode[] => [
    { op: 'Conv', name: '/c/Conv', inputs: ['x', 'W', 'cb'], outputs: ['h'], attrs: {} },
    { op: 'BatchNormalization', name: '/bn/BatchNormalization', inputs: ['h', 's', 'B', 'm', 'v'], outputs: ['y'], attrs: { epsilon: 0.25 } },
  ];
  const f = (data: number[], shape = [2]) => ({ shape, data: Float32Array.from(data) });
  const weights = new Map([['W', f([1, 2, 3, 4, 5, 6, 7, 8], [2, 1, 2, 2])], ['cb', f([1, -1])], ['s', f([2, 3])], ['B', f([0.5, -0.5])], ['m', f([3, 1])], ['v', f([0.75, 8.75])]]);
  const r = foldBatchNorm(nodes(), weights, new Map(), ['y']);
  t.deepEqual(r.nodes, [{ op: 'Conv', name: '/c/Conv', inputs: ['x', 'W', 'B'], outputs: ['y'], attrs: {} }]);
  // k = s / sqrt(v + eps) = [2, 1]: W rows scaled by 2 and 1; bias (cb - m)·k + B = [-4 + 0.5, -2 - 0.5].
  t.deepEqual([...r.weights.get('W')!.data], [2, 4, 6, 8, 5, 6, 7, 8]);
  t.deepEqual([...r.weights.get('B')!.data], [-3.5, -2.5]);
  t.deepEqual([...weights.get('W')!.data], [1, 2, 3, 4, 5, 6, 7, 8], 'the parsed weights are not changed');
  // The Conv output also a graph output or read by another node, a shared weight, training mode: nothing changes.
  t.deepEqual(foldBatchNorm(nodes(), weights, new Map(), ['y', 'h']).nodes, nodes());
  const shared = [...nodes(), { op: 'Conv', name: '/c2/Conv', inputs: ['x', 'W'], outputs: ['h2'], attrs: {} }];
  t.deepEqual(foldBatchNorm(shared, weights, new Map(), ['y', 'h2']).nodes, shared);
  const training = nodes().map((n) => (n.op === 'BatchNormalization' ? { ...n, attrs: { training_mode: 1 } } : n));
  t.deepEqual(foldBatchNorm(training, weights, new Map(), ['y']).nodes, training);
  // A Conv without a bias gets the BN's B (rewritten) as its bias.
  const noBias = nodes().map((n) => (n.op === 'Conv' ? { ...n, inputs: ['x', 'W'] } : n));
  const r2 = foldBatchNorm(noBias, weights, new Map(), ['y']);
  t.deepEqual(r2.nodes[0].inputs, ['x', 'W', 'B']);
  t.deepEqual([...r2.weights.get('B')!.data], [-5.5, -1.5]);
});

test('the LayerNorm-Linear node falls back to LayerNorm, MatMul and Add where a shape does not fit the composite (a [1, o] bias): same loss and gradients', async (t) => {
  const { ir, weights } = prepareImport(tinyVitOnnx({ qkv: 'separate', seed: 5 }), { loraTargets: 'attn/(q|v)/' });
  const biases = new Set(ir.nodes.filter((n) => n.op === LAYERNORM_LINEAR_OP).map((n) => n.inputs[4]));
  t.true(biases.size > 0);
  const odd: ImportedGraph = { ...ir, weights: ir.weights.map((w) => (biases.has(w.onnx) ? { ...w, shape: [1, ...w.shape] } : w)) };
  const r = worstRel(await lossAndGrads(odd, weights, 2), await lossAndGrads(ir, weights, 2));
  t.true(r.rel < 1e-4, `${r.key}: ${r.rel}`);
});
