/**
 * ONNX import on PyTorch-shaped fixtures (scripts/reference/onnx-fixtures.ts, generated in-process, seeded): the
 * imported forward equals onnxruntime's run of the original file, structure (LoRA candidates, automatic exits),
 * the typed errors (unsupported op, unfixable dynamic shape, exit that is no block boundary, LoRA pattern matching
 * nothing), the backbone round trip, LoRA training on the imported ViT, and anytime segments equal to the one-pass
 * inference graph.
 */
import test from 'ava';
import onnxProto from 'onnx-proto';
import { tinyResNetOnnx, tinyVitOnnx } from '../../scripts/reference/onnx-fixtures.ts';
import * as G from '../../src/graph/index.ts';
import { loadDataset, balancedIndices } from '../../src/data/index.ts';
import { loadBackbone } from '../../src/model/backbone.ts';
import { buildInferGraph, embeddingName, logitsName } from '../../src/model/graphs.ts';
import { buildSegmentGraphs, HIDDEN_NEXT } from '../../src/model/segments.ts';
import { exitTensorNames, modelTensors } from '../../src/model/architecture.ts';
import { forwardAgreement, importOnnxModel, listOnnx, prepareImport } from '../../src/model/onnx/import.ts';
import { runToExits } from '../../src/model/onnx/architecture.ts';
import { OnnxImportError } from '../../src/model/onnx/read.ts';
import { GELU_LINEAR_OP } from '../../src/model/onnx/fuse-gelu-linear.ts';
import { Session } from '../../src/runtime/index.ts';
import { Trainer } from '../../src/train/trainer.ts';
import { Rng } from '../../src/util/rng.ts';
import { gradcheck } from './gradcheck-helpers.ts';
import { tempDir } from '../temp-dirs.ts';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const { onnx } = onnxProto;
const VIT = tinyVitOnnx();
const CNN = tinyResNetOnnx();

test('imported tiny ViT (fused qkv, shape plumbing, Erf GELU) computes what onnxruntime computes from the original file', async (t) => {
  const p = prepareImport(VIT, { loraTargets: 'attn/qkv/' });
  t.deepEqual(p.ir.exits.map((e) => e.tensor), ['/blocks.0/Add_1_output_0', '/blocks.1/Add_1_output_0', '/blocks.2/Add_1_output_0']);
  t.deepEqual(p.ir.lora.map((s) => [s.prefix, s.in, s.out]), [0, 1, 2].map((i) => [`blocks.${i}.attn.qkv`, 32, 96]));
  t.true(p.foldedNodes > 100, `${p.foldedNodes} shape-plumbing nodes folded`);
  // Each Erf GELU composition became one Gelu node, which with the following fc2 Linear became one GeluLinear.
  t.deepEqual(p.ir.nodes.filter((n) => n.op === GELU_LINEAR_OP).map((n) => n.name), [0, 1, 2].map((i) => `/blocks.${i}/mlp/fc2/MatMul`));
  t.false(p.ir.nodes.some((n) => n.op === 'Gelu'));
  t.false(p.ir.nodes.some((n) => n.op === 'Erf'));
  const diff = await forwardAgreement(p.ir, p.weights, VIT, { batch: 3, seed: 4 });
  t.true(diff <= 1e-5, `max |fmfl - onnxruntime| = ${diff}`);
});

test("timm's qkv.unbind(0) (Split + Squeeze) imports: Split mapped, forward equals onnxruntime, LoRA gradients match finite differences", async (t) => {
  const bytes = tinyVitOnnx({ qkv: 'unbind', seed: 2 });
  const p = prepareImport(bytes, { loraTargets: 'blocks.1/attn/qkv/' });
  t.is(p.ir.nodes.filter((n) => n.op === 'Split').length, 3);
  const diff = await forwardAgreement(p.ir, p.weights, bytes, { batch: 3, seed: 4 });
  t.true(diff <= 1e-5, `max |fmfl - onnxruntime| = ${diff}`);
  const shapes = new Map(p.ir.weights.map((w) => [w.name, w.shape]));
  const r = await gradcheck((images, a, b) => {
    const g = images.graph;
    const made = new Map<string, G.Tensor>();
    const param = (name: string): G.Tensor => {
      if (name === 'blocks.1.attn.qkv.lora_a') return a;
      if (name === 'blocks.1.attn.qkv.lora_b') return b;
      let x = made.get(name);
      if (!x) made.set(name, (x = g.initializer(name, p.weights.get(name)!, shapes.get(name)!)));
      return x;
    };
    return runWithLora(p.ir, images, param, { rank: 2, alpha: 4, targets: ['q'] });
  }, [{ shape: [2, 1, 28, 28], diff: false }, { shape: [32, 2], range: [-0.5, 0.5] }, { shape: [2, 96], range: [-0.5, 0.5] }], { dtype: 'float32', seed: 3, maxCoords: 10 });
  t.true(r.maxRelErr < 5e-3, `max relative error ${r.maxRelErr} (${r.worst})`);
});

test('AveragePool imports as a depthwise Conv: forward equals onnxruntime; count_include_pad=0 with padding is a typed error', async (t) => {
  const bytes = tinyResNetOnnx({ pool: 'avg' });
  const p = prepareImport(bytes, { loraTargets: 'fc' });
  t.true(p.ir.nodes.some((n) => n.op === 'AveragePool'));
  const diff = await forwardAgreement(p.ir, p.weights, bytes, { batch: 2, seed: 5 });
  t.true(diff <= 1e-5, `max |fmfl - onnxruntime| = ${diff}`);
  const m = onnx.ModelProto.decode(bytes);
  const pool = m.graph!.node!.find((n) => n.opType === 'AveragePool')!;
  pool.attribute!.find((a) => a.name === 'count_include_pad')!.i = 0;
  const err = t.throws(() => prepareImport(onnx.ModelProto.encode(m).finish()), { instanceOf: OnnxImportError });
  t.is(err?.reason, 'unsupported-form');
  t.is(err?.op, 'AveragePool');
  t.regex(err!.message, /count_include_pad/);
});

test('a Split whose sizes do not fit the axis is a typed unsupported-form error naming the node', (t) => {
  const bytes = tinyVitOnnx({ qkv: 'unbind', seed: 2 });
  const m = onnx.ModelProto.decode(bytes);
  const split = m.graph!.node!.find((n) => n.opType === 'Split')!;
  const sizes = m.graph!.node!.find((n) => n.output![0] === split.input![1]) ?? null;
  const init = m.graph!.initializer!.find((i) => i.name === split.input![1]);
  if (init) init.int64Data = [1, 1, 2];
  else {
    // A Constant node: replace its value.
    const at = sizes!.attribute!.find((a) => a.name === 'value')!;
    at.t!.rawData = new Uint8Array(new BigInt64Array([1n, 1n, 2n]).buffer);
    at.t!.int64Data = [];
  }
  const err = t.throws(() => prepareImport(onnx.ModelProto.encode(m).finish()), { instanceOf: OnnxImportError });
  t.is(err?.reason, 'unsupported-form');
  t.is(err?.op, 'Split');
  t.regex(err!.message, /Split of axis 0 \(size 3\) into \[1,1,2\]/);
  t.regex(err!.node ?? "", /blocks\.0\/attn\/Split/);
});

test('imported ResNet-like CNN (Conv, BatchNorm, MaxPool, Clip, GlobalAveragePool, Flatten, Gemm) matches onnxruntime', async (t) => {
  const p = prepareImport(CNN, { loraTargets: 'fc' });
  t.is(p.ir.exits.length, 2);
  t.is(p.ir.dim, 16);
  t.deepEqual(p.ir.lora.map((s) => s.prefix), ['fc']);
  const diff = await forwardAgreement(p.ir, p.weights, CNN, { batch: 2, seed: 5 });
  t.true(diff <= 1e-5, `max |fmfl - onnxruntime| = ${diff}`);
});

test('--list shows LoRA candidates by node and weight name and the repeated blocks', (t) => {
  const l = listOnnx(VIT);
  t.true(l.lora.some((c) => c.node === '/blocks.1/attn/qkv/MatMul' && c.weight.startsWith('onnx::MatMul_')));
  t.true(l.lora.some((c) => c.node === '/head/Gemm' && c.weight === 'head.weight' && c.in === 32 && c.out === 10));
  t.is(l.families[0].pattern, '/blocks.#');
  t.is(l.families[0].outputs.length, 3);
});

test('an op without a mapping raises OnnxImportError naming the op, the node and what to do', (t) => {
  const e = t.throws(() => prepareImport(tinyVitOnnx({ unsupportedOp: 'NonMaxSuppression' })), { instanceOf: OnnxImportError });
  t.is(e!.reason, 'unsupported-op');
  t.is(e!.op, 'NonMaxSuppression');
  t.is(e!.node, '/blocks.0/NonMaxSuppression');
  t.regex(e!.message, /no mapping onto fmfl's op table; re-export/);
});

test('a symbolic spatial dimension is a typed dynamic-shape error unless --input-size fixes it', async (t) => {
  const m = onnx.ModelProto.decode(VIT);
  const dims = m.graph!.input![0].type!.tensorType!.shape!.dim!;
  dims[2] = { dimParam: 'height' };
  dims[3] = { dimParam: 'width' };
  const bytes = onnx.ModelProto.encode(m).finish();
  const e = t.throws(() => prepareImport(bytes), { instanceOf: OnnxImportError });
  t.is(e!.reason, 'dynamic-shape');
  t.regex(e!.message, /--input-size/);
  const p = prepareImport(bytes, { inputSize: 28 });
  t.true((await forwardAgreement(p.ir, p.weights, bytes)) <= 1e-5);
  const c = onnx.ModelProto.decode(VIT);
  c.graph!.input![0].type!.tensorType!.shape!.dim![1] = { dimParam: 'channels' };
  t.is(t.throws(() => prepareImport(onnx.ModelProto.encode(c).finish(), { inputSize: 28 }), { instanceOf: OnnxImportError })!.reason, 'dynamic-shape');
});

test('structure errors: an exit that is not a block boundary, a LoRA pattern matching nothing, bytes that are not ONNX', (t) => {
  const e = t.throws(() => prepareImport(VIT, { exits: ['/blocks.0/attn/proj/Add_output_0', '/blocks.1/Add_1_output_0'] }), { instanceOf: OnnxImportError });
  t.is(e!.reason, 'structure');
  t.regex(e!.message, /not a block boundary/);
  t.regex(t.throws(() => prepareImport(VIT, { loraTargets: 'attn/(q|v)/' }), { instanceOf: OnnxImportError })!.message, /matches none of the \d+ MatMul\/Gemm nodes/);
  t.is(t.throws(() => prepareImport(new Uint8Array([1, 2, 3, 4, 5])), { instanceOf: OnnxImportError })!.reason, 'malformed');
});

test('LoRA and head gradients through the imported ViT match finite differences', async (t) => {
  const p = prepareImport(VIT, { loraTargets: 'blocks.1/attn/qkv/' });
  const { ir, weights } = p;
  const shapes = new Map(ir.weights.map((w) => [w.name, w.shape]));
  const r = await gradcheck((images, a, b) => {
    const g = images.graph;
    const made = new Map<string, G.Tensor>();
    const param = (name: string): G.Tensor => {
      if (name === 'blocks.1.attn.qkv.lora_a') return a;
      if (name === 'blocks.1.attn.qkv.lora_b') return b;
      let x = made.get(name);
      if (!x) made.set(name, (x = g.initializer(name, weights.get(name)!, shapes.get(name)!)));
      return x;
    };
    return runWithLora(ir, images, param, { rank: 2, alpha: 4, targets: ['q'] });
  }, [{ shape: [2, 1, 28, 28], diff: false }, { shape: [32, 2], range: [-0.5, 0.5] }, { shape: [2, 96], range: [-0.5, 0.5] }], { dtype: 'float32', seed: 3, maxCoords: 10 });
  t.true(r.maxRelErr < 5e-3, `max relative error ${r.maxRelErr} (${r.worst})`);
});

/** The last exit tensor's token sums, with LoRA on the picked sites. */
function runWithLora(ir: Parameters<typeof runToExits>[0], images: G.Tensor, param: (n: string) => G.Tensor, lora: { rank: number; alpha: number; targets: ['q'] }): G.Tensor {
  const [, , last] = runToExits(ir, images, param, { lora }, 3);
  return G.reduceSum(last, [1], false);
}

test('import-model writes a backbone that loads as an architecture; LoRA training lowers the loss; segments equal the one-pass graph', async (t) => {
  const dir = await tempDir('fmfl-onnx-');
  const file = join(dir, 'vit.onnx');
  await writeFile(file, VIT);
  const rep = await importOnnxModel(file, { name: 'tiny-vit', loraTargets: 'attn/qkv/', dir });
  t.true(rep.forwardMaxAbsDiff <= 1e-5);
  t.regex(rep.arch, /^onnx:[0-9a-f]{16}$/);
  t.is(rep.manifest.imported!.sourceSha256, rep.sourceSha256);
  const bb = await loadBackbone('tiny-vit', dir);
  t.is(bb.cfg.arch, rep.arch);
  t.is(bb.cfg.depth, 3);
  t.deepEqual(bb.input, { size: 28, channels: 1, mean: [0.5], std: [0.5] });

  const [train, testSet] = await Promise.all([loadDataset('mnist', 'train'), loadDataset('mnist', 'test')]);
  const heads = exitTensorNames(bb.cfg);
  const weights = new Map([...bb.weights].filter(([k]) => !heads.has(k)));
  const trainer = await Trainer.create({
    cfg: bb.cfg, lora: { rank: 4, alpha: 8, targets: ['q'] }, trainableSet: 'lora+heads', weights, batch: 32, seed: 3, threads: 1,
    optimizer: { kind: 'adamw', lr: 1e-2, weightDecay: 0.01 },
  });
  t.teardown(() => trainer.release());
  const losses: number[] = [];
  await trainer.trainSteps(train, balancedIndices(train.labels, 64, 1), 60, (_i, l) => losses.push(l));
  const head = losses.slice(0, 5).reduce((a, b) => a + b, 0) / 5;
  const tail = losses.slice(-5).reduce((a, b) => a + b, 0) / 5;
  t.true(tail < head * 0.85, `loss fell from ${head.toFixed(3)} to ${tail.toFixed(3)}`);
  const ev = await trainer.evaluate(testSet, balancedIndices(testSet.labels, 30, 2));
  t.true(ev.accuracy[2] > 0.3, `last-exit held-out accuracy ${ev.accuracy[2]} beats chance (0.1)`);
  t.true(trainer.params.get('blocks.0.attn.qkv.lora_b')!.some((x) => x !== 0), 'LoRA B moved');

  // Anytime segments (hidden state between exit tensors) reproduce the one-pass inference graph.
  const lora = { rank: 4, alpha: 8, targets: ['q'] as ['q'] };
  const trainable = modelTensors(bb.cfg, lora).filter((s) => s.group !== 'backbone');
  const values = new Map(trainable.map((s) => [s.name, trainer.params.get(s.name) ?? Float32Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i))]));
  const spec = { cfg: bb.cfg, lora, trainable, frozen: bb.weights, batch: 2 };
  const rng = new Rng(9);
  const x = Float32Array.from({ length: 2 * 28 * 28 }, () => rng.uniform(-1, 1));
  const feeds = Object.fromEntries(trainable.map((s) => [s.name, { data: values.get(s.name)!, dims: s.shape }]));
  const one = await Session.create(buildInferGraph(spec).onnx, { threads: 1 });
  const full = await one.run({ ...feeds, images: { data: x, dims: [2, 1, 28, 28] } });
  await one.release();
  let hidden: Float32Array | null = null;
  for (const seg of buildSegmentGraphs(spec)) {
    const s = await Session.create(seg.onnx, { threads: 1 });
    const f = Object.fromEntries(seg.params.map((n) => [n, feeds[n]]));
    const out = await s.run({ ...f, [seg.input]: seg.input === 'images' ? { data: x, dims: [2, 1, 28, 28] } : { data: hidden!, dims: [2, 17, 32] } });
    await s.release();
    const a = out[logitsName(seg.index)] as Float32Array;
    const b = full[logitsName(seg.index)] as Float32Array;
    t.true(a.every((v, i) => Math.abs(v - b[i]) < 1e-5), `segment ${seg.index} logits`);
    t.true((out[embeddingName(seg.index)] as Float32Array).length === 2 * 32);
    hidden = (out[HIDDEN_NEXT] as Float32Array | undefined) ?? null;
  }
});
