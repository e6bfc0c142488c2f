/**
 * A real PyTorch export (test/fixtures/onnx/resnet.onnx, made by `scripts/reference/export_models.py --models
 * resnet`: a ResNet-18-style CNN with BatchNorm, torch 1.13, opset 17, symbolic batch) against the values PyTorch
 * computed for it (resnet.json): the imported forward equals onnxruntime's run of the file and PyTorch's outputs,
 * fmfl's LoRA and head gradients equal PyTorch autograd's, a few LoRA steps lower the loss, and `--keep-head`
 * keeps the model's own classifier as the last exit (with typed errors when it cannot).
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { compareWithTorch, fmflGradients, importReference, type TorchReference } from '../../scripts/reference/torch-reference.ts';
import { importOnnxModel, prepareImport } from '../../src/model/onnx/import.ts';
import { OnnxImportError } from '../../src/model/onnx/read.ts';
import { loadBackbone } from '../../src/model/backbone.ts';
import { buildInferGraph, logitsName } from '../../src/model/graphs.ts';
import { exitTensorNames, trainableTensors } from '../../src/model/architecture.ts';
import { Session } from '../../src/runtime/index.ts';
import { tempDir } from '../temp-dirs.ts';

const { onnx } = onnxProto;
const FIXTURE = new URL('../fixtures/onnx/', import.meta.url);
const ONNX = new Uint8Array(readFileSync(new URL('resnet.onnx', FIXTURE)));
const REF = JSON.parse(readFileSync(new URL('resnet.json', FIXTURE), 'utf8')) as TorchReference;

test('PyTorch ResNet export: every BatchNorm folded into its Conv; forward equals onnxruntime and PyTorch; LoRA and head gradients equal autograd', async (t) => {
  const { ir } = prepareImport(ONNX, { loraTargets: REF.loraTargets, exits: REF.exits });
  t.is(ir.nodes.filter((n) => n.op === 'BatchNormalization').length, 0);
  t.is(ir.nodes.filter((n) => n.op === 'Conv').length, 20);
  t.false(ir.weights.some((w) => /running_(mean|var)$/.test(w.onnx)), 'the folded statistics are no backbone tensors');
  const r = await compareWithTorch(REF, ONNX);
  t.is(r.exits, 3);
  t.is(r.loraSites, 1);
  t.true(r.forwardVsOrt <= 1e-5, `max |fmfl - onnxruntime| ${r.forwardVsOrt}`);
  t.true(r.forwardVsTorch <= 1e-5, `max |fmfl - torch| ${r.forwardVsTorch}`);
  t.true(Math.abs(r.loss - r.torchLoss) <= 1e-5 * Math.abs(r.torchLoss), `loss ${r.loss} vs ${r.torchLoss}`);
  t.is(r.trainable, 10, 'fc LoRA A/B and two fresh heads (the kept fc has none)');
  t.true(r.maxRelGradDiff <= 1e-4, `max relative gradient difference ${r.maxRelGradDiff} (${r.worstGrad})`);
});

test('a few SGD steps of LoRA + heads on the reference batch lower the loss', async (t) => {
  const { cfg, lora, weights } = importReference(REF, ONNX);
  const ref: TorchReference = { ...REF, params: structuredClone(REF.params) };
  const losses: number[] = [];
  for (let step = 0; step < 5; step++) {
    const { loss, grads } = await fmflGradients(ref, cfg, lora, weights);
    losses.push(loss);
    for (const [name, g] of grads) ref.params[name].value = ref.params[name].value.map((v, i) => v - 0.5 * g[i]);
  }
  t.true(losses[4] < losses[0] * 0.9, `loss ${losses.map((l) => l.toFixed(4)).join(' -> ')}`);
});

test('--keep-head: the last exit is the model\'s own fc, so a fresh import predicts what the model predicts', async (t) => {
  const dir = await tempDir('fmfl-onnx-torch-');
  const file = join(dir, 'resnet.onnx');
  await writeFile(file, ONNX);
  const rep = await importOnnxModel(file, { name: 'torch-resnet', loraTargets: REF.loraTargets, exits: REF.exits, keepHead: true, dir });
  t.deepEqual(rep.exits.at(-1)!.kept, { logits: 'logits', features: '/Flatten_output_0', classes: 10 });
  const bb = await loadBackbone('torch-resnet', dir);
  t.deepEqual([...exitTensorNames(bb.cfg)].filter((n) => n.startsWith('exits.2.')), [], 'no fresh head on the kept exit');
  const lora = { rank: REF.lora.rank, alpha: REF.lora.alpha, targets: ['q' as const] };
  const trainable = trainableTensors(bb.cfg, 'lora+heads', lora);
  const feeds = Object.fromEntries(trainable.map((s) => [s.name, { data: s.name.startsWith('exits.') ? bb.weights.get(s.name)! : new Float32Array(s.shape[0] * s.shape[1]), dims: s.shape }]));
  const s = await Session.create(buildInferGraph({ cfg: bb.cfg, lora, trainable, frozen: bb.weights, batch: REF.input[0] }).onnx, { threads: 1 });
  t.teardown(() => s.release());
  const out = await s.run({ ...feeds, images: { data: Float32Array.from(REF.images), dims: REF.input } });
  const last = out[logitsName(2)] as Float32Array;
  t.true(last.every((v, i) => Math.abs(v - REF.outputs.logits[i]) <= 1e-5), 'zero LoRA B: the kept exit gives the model\'s logits');
});

test('--keep-head typed errors: class count, exit width, an output that is not a Linear', (t) => {
  const opts = { loraTargets: REF.loraTargets, exits: REF.exits, keepHead: true };
  const classes = t.throws(() => prepareImport(ONNX, { ...opts, labels: ['a', 'b', 'c'] }), { instanceOf: OnnxImportError });
  t.is(classes!.reason, 'structure');
  t.regex(classes!.message, /has 10 classes but the backbone is imported with 3 labels; pass --classes 10/);
  t.regex(t.throws(() => prepareImport(ONNX, { ...opts, exits: 'auto' }), { instanceOf: OnnxImportError })!.message, /reads \[1,32\], but the exits have width 8/);
  const m = onnx.ModelProto.decode(ONNX);
  m.graph!.node!.push(onnx.NodeProto.create({ opType: 'Softmax', name: '/softmax/Softmax', input: ['logits'], output: ['probs'], attribute: [onnx.AttributeProto.create({ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 })] }));
  m.graph!.output![0].name = 'probs';
  const e = t.throws(() => prepareImport(onnx.ModelProto.encode(m).finish(), opts), { instanceOf: OnnxImportError });
  t.regex(e!.message, /not computed by a Linear layer .* but by Softmax '\/softmax\/Softmax'; drop --keep-head/);
});
