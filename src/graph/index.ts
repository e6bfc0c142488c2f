export { Graph, Tensor, GraphError, GradientError, DTYPES, shapeSize, shapeEq } from './graph.ts';
export type { DType, FloatDType, Shape, TensorData, GraphNode, Attrs } from './graph.ts';
export * from './ops/index.ts';
export { grad } from './autodiff.ts';
export { exportOnnx, ONNX_IR_VERSION, ONNX_OPSET } from './onnx-export.ts';
