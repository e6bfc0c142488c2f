/**
 * fmfl's import of PyTorch exports against PyTorch and onnxruntime (not part of `npm test`; the committed fixture
 * test/fixtures/onnx/ is checked by test/unit/onnx-torch.test.ts with the same functions):
 *   /usr/bin/python3 scripts/reference/export_models.py --out DIR
 *   node --import=tsx scripts/reference/compare-import.ts [--json] DIR/vit-qkv.json DIR/resnet.json DIR/vit-ref.json
 * For each reference (written by export_models.py next to its .onnx): the imported forward against onnxruntime's
 * run of the original file and against PyTorch's outputs on the stored batch (max abs diff), and fmfl's training
 * graph (LoRA + exit heads, the reference's LoRA / head values) against PyTorch autograd: the loss and, per
 * trainable tensor, max |fmfl - torch| / max |torch| (the table reports the largest).
 */
import { readFile } from 'node:fs/promises';
import { compareWithTorch, type TorchReference } from './torch-reference.ts';

const args = process.argv.slice(2);
const json = args.includes('--json');
const rows = [];
for (const file of args.filter((a) => a !== '--json')) {
  const ref = JSON.parse(await readFile(file, 'utf8')) as TorchReference;
  const onnx = new Uint8Array(await readFile(file.replace(/\.json$/, '.onnx')));
  const r = await compareWithTorch(ref, onnx);
  rows.push(r);
  if (!json) console.error(`${r.model}: ${r.nodes} nodes (${r.foldedNodes} folded), ${r.loraSites} LoRA sites, ${r.exits} exits; max |fwd - ort| ${r.forwardVsOrt.toExponential(2)}, |fwd - torch| ${r.forwardVsTorch.toExponential(2)}; loss ${r.loss} vs ${r.torchLoss}; max rel grad diff ${r.maxRelGradDiff.toExponential(2)} (${r.worstGrad})`);
}
console.log(JSON.stringify(rows, null, json ? 0 : 2));
