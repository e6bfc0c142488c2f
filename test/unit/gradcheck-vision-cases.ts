/**
 * Gradient-check cases of the ops exported vision models need (src/graph/ops/conv.ts, ops/clip.ts) and of the op-table forms
 * the ONNX importer maps Gemm, Flatten, GlobalAveragePool, frozen BatchNormalization, LayerNormalization and Softmax
 * onto. Appended to the op table's cases in gradcheck.test.ts. Conv and MaxPool run in float32 (onnxruntime's CPU
 * Conv, ConvTranspose and MaxPool-with-indices kernels are float32 only).
 */
import * as G from '../../src/graph/index.ts';
import type { InputSpec } from './gradcheck-helpers.ts';

export interface VisionCase {
  op: string;
  title: string;
  build: (...xs: G.Tensor[]) => G.Tensor;
  inputs: InputSpec[];
  dtype?: 'float32' | 'float64';
}

const f32 = 'float32' as const;

export const VISION_CASES: VisionCase[] = [
  { op: 'Conv', title: '3x3, pad 1, stride 1, with bias [2,3,5,5]', build: (x, w, b) => G.conv2d(x, w, b, { pads: [1, 1, 1, 1] }), inputs: [{ shape: [2, 3, 5, 5] }, { shape: [4, 3, 3, 3] }, { shape: [4] }], dtype: f32 },
  { op: 'Conv', title: 'patch embedding: kernel 4 stride 4 [2,1,8,8]', build: (x, w, b) => G.conv2d(x, w, b, { strides: [4, 4] }), inputs: [{ shape: [2, 1, 8, 8] }, { shape: [6, 1, 4, 4] }, { shape: [6] }], dtype: f32 },
  { op: 'Conv', title: 'stride 2 on an odd size, asymmetric pads, no bias [1,2,7,6]', build: (x, w) => G.conv2d(x, w, null, { strides: [2, 2], pads: [1, 0, 0, 1] }), inputs: [{ shape: [1, 2, 7, 6] }, { shape: [3, 2, 3, 3] }], dtype: f32 },
  { op: 'Conv', title: 'dilation 2, groups 2 [2,4,7,7]', build: (x, w) => G.conv2d(x, w, null, { dilations: [2, 2], group: 2, pads: [2, 2, 2, 2] }), inputs: [{ shape: [2, 4, 7, 7] }, { shape: [4, 2, 3, 3] }], dtype: f32 },
  { op: 'MaxPool', title: '3x3 stride 2 pad 1 (ResNet stem) [2,3,6,6]', build: (x) => G.maxPool2d(x, [3, 3], { strides: [2, 2], pads: [1, 1, 1, 1] }), inputs: [{ shape: [2, 3, 6, 6] }], dtype: f32 },
  { op: 'MaxPool', title: '2x2 stride 2 [1,2,4,4]', build: (x) => G.maxPool2d(x, [2, 2]), inputs: [{ shape: [1, 2, 4, 4] }], dtype: f32 },
  { op: 'Clip', title: 'ReLU6 bounds', build: (x) => G.clip(x, 0, 6), inputs: [{ shape: [3, 4], range: [-3, 9] }] },
  { op: 'Clip', title: 'lower bound only', build: (x) => G.clip(x, -0.5), inputs: [{ shape: [5], range: [-2, 2] }] },
  { op: 'HardSigmoid', title: 'alpha 1/6, beta 0.5 (HardSwish form x·hs(x))', build: (x) => G.mul(x, G.hardSigmoid(x, 1 / 6, 0.5)), inputs: [{ shape: [3, 5], range: [-5, 5] }], dtype: f32 },
  { op: 'composite', title: 'Gemm as imported: alpha·x·Wᵀ + beta·c', build: (x, w, c) => G.add(G.mul(G.matmul(x, G.transpose(w, [1, 0])), x.graph.scalar(0.7, 'float64')), G.mul(c, x.graph.scalar(1.3, 'float64'))), inputs: [{ shape: [3, 4] }, { shape: [5, 4] }, { shape: [5] }] },
  { op: 'composite', title: 'Flatten axis 1 [2,3,2,2]', build: (x) => G.flatten(x, 1), inputs: [{ shape: [2, 3, 2, 2] }] },
  { op: 'composite', title: 'GlobalAveragePool [2,3,4,5]', build: (x) => G.globalAveragePool(x), inputs: [{ shape: [2, 3, 4, 5] }] },
  { op: 'composite', title: 'BatchNormalization frozen statistics, scale and bias trained [2,3,4,4]', build: (x, s, b) => G.batchNormInference(x, s, b, x.graph.constant([0.1, -0.2, 0.3], [3], 'float64'), x.graph.constant([0.5, 1.5, 2], [3], 'float64'), 1e-5), inputs: [{ shape: [2, 3, 4, 4] }, { shape: [3] }, { shape: [3] }] },
  { op: 'composite', title: 'Softmax on axis 0 of [3,2,4]', build: (x) => G.softmax(x, 0), inputs: [{ shape: [3, 2, 4] }] },
];
