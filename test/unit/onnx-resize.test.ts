/**
 * ONNX Resize import (src/model/onnx/resize.ts): nearest as a Gather, linear as a MatMul per spatial axis. The
 * imported forward is checked against onnxruntime's own Resize on the original file for PyTorch's forms (nearest
 * asymmetric/floor, bilinear pytorch_half_pixel, align_corners) and others (sizes, downsampling, non-integer and
 * per-axis scales); the mapping's gradient is checked against finite differences; unsupported forms are typed errors.
 */
import test from 'ava';
import { tinyResNetOnnx } from '../../scripts/reference/onnx-fixtures.ts';
import { forwardAgreement, prepareImport } from '../../src/model/onnx/import.ts';
import { OnnxImportError } from '../../src/model/onnx/read.ts';
import { planResize, resizeTensor } from '../../src/model/onnx/resize.ts';
import { gradcheck } from './gradcheck-helpers.ts';

type R = NonNullable<Parameters<typeof tinyResNetOnnx>[0]>['resize'];
const CASES: { name: string; resize: R }[] = [
  { name: 'nearest x2, asymmetric / floor (F.interpolate nearest)', resize: { mode: 'nearest', transform: 'asymmetric', nearest: 'floor', scales: [1, 1, 2, 2] } },
  { name: 'nearest to sizes 8x11, half_pixel / round_prefer_floor (downsampling, non-square)', resize: { mode: 'nearest', transform: 'half_pixel', sizes: [1, 16, 8, 11] } },
  { name: 'nearest x1.5 x 0.75, asymmetric / round_prefer_ceil', resize: { mode: 'nearest', transform: 'asymmetric', nearest: 'round_prefer_ceil', scales: [1, 1, 1.5, 0.75] } },
  { name: 'linear x2, pytorch_half_pixel (F.interpolate bilinear)', resize: { mode: 'linear', transform: 'pytorch_half_pixel', scales: [1, 1, 2, 2] } },
  { name: 'linear to sizes 7x20, align_corners', resize: { mode: 'linear', transform: 'align_corners', sizes: [1, 16, 7, 20] } },
  { name: 'linear x0.5, half_pixel', resize: { mode: 'linear', transform: 'half_pixel', scales: [1, 1, 0.5, 0.5] } },
];

for (const c of CASES) {
  test(`Resize ${c.name}: imported forward equals onnxruntime's Resize`, async (t) => {
    // `sizes` name the batch (1), so the comparison runs at batch 1.
    const bytes = tinyResNetOnnx({ resize: c.resize });
    const p = prepareImport(bytes, { loraTargets: 'fc' });
    t.true(p.ir.nodes.some((n) => n.op === 'Resize'));
    const diff = await forwardAgreement(p.ir, p.weights, bytes, { batch: 1, seed: 9 });
    t.true(diff <= 1e-5, `max |fmfl - onnxruntime| = ${diff}`);
  });
}

test('the Resize mapping (Gather / interpolation MatMul) has gradients that match finite differences', async (t) => {
  const shape = [2, 3, 5, 6];
  const plans = [
    planResize(shape, [1, 1, 2, 2], [], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' }),
    planResize(shape, [], [2, 3, 3, 4], { mode: 'nearest', coordinate_transformation_mode: 'half_pixel' }),
    planResize(shape, [1, 1, 2, 1.5], [], { mode: 'linear', coordinate_transformation_mode: 'pytorch_half_pixel' }),
    planResize(shape, [], [2, 3, 8, 4], { mode: 'linear', coordinate_transformation_mode: 'align_corners' }),
  ];
  for (const plan of plans) {
    t.true(plan.length > 0);
    const r = await gradcheck((x) => resizeTensor(x, plan), [{ shape }], { seed: 5 });
    t.true(r.maxRelErr < 1e-6, `${plan.map((p) => p.kind).join('+')}: max relative error ${r.maxRelErr} (${r.worst})`);
  }
});

test('linear weights interpolate and keep constants; nearest x2 asymmetric repeats each row', (t) => {
  const [lin] = planResize([1, 1, 1, 4], [1, 1, 1, 2], [], { mode: 'linear', coordinate_transformation_mode: 'half_pixel' });
  if (lin.kind !== 'linear') return t.fail();
  for (let o = 0; o < 8; o++) t.true(Math.abs([0, 1, 2, 3].reduce((s, i) => s + lin.matrix[i * 8 + o], 0) - 1) < 1e-12, 'columns sum to 1');
  const [nn] = planResize([1, 1, 3, 3], [1, 1, 2, 1], [], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' });
  t.deepEqual(nn.kind === 'nearest' ? nn.index : null, [0, 0, 1, 1, 2, 2]);
});

test('unsupported Resize forms are typed errors naming the node: cubic, resizing channels, antialias', (t) => {
  for (const [resize, re] of [
    [{ mode: 'cubic', transform: 'half_pixel', scales: [1, 1, 2, 2] }, /mode 'cubic'/],
    [{ mode: 'nearest', transform: 'asymmetric', scales: [1, 2, 2, 2] }, /axis 1/],
    [{ mode: 'linear', transform: 'tf_crop_and_resize', scales: [1, 1, 2, 2] }, /tf_crop_and_resize/],
  ] as [R, RegExp][]) {
    const err = t.throws(() => prepareImport(tinyResNetOnnx({ resize })), { instanceOf: OnnxImportError });
    t.is(err?.reason, 'unsupported-form');
    t.is(err?.op, 'Resize');
    t.regex(err!.message, re);
  }
  t.throws(() => planResize([1, 1, 4, 4], [1, 1, 0.5, 0.5], [], { mode: 'linear', antialias: 1 }), { message: /antialias/ });
});
