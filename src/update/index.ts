export { UpdateError, UpdateRefusal } from './errors.ts';
export { numel, manifestDigest, toUpdateManifest } from './types.ts';
export type { TensorSpec, PrototypeSpec, UpdateManifest, TensorMap, PrototypeTable, ModelUpdate } from './types.ts';
export { DEFAULT_DECODE_LIMITS, UPDATE_FORMAT_VERSION } from './limits.ts';
export type { DecodeLimits } from './limits.ts';
export {
  ValueCodec, IndexCodec, valueCodec, indexCodec, valueCodecForBits, chooseIndexCodec, assertCodecRegistry,
  DEFAULT_BLOCK_SIZE, DEFAULT_SIGN_BLOCK_SIZE, defaultBlockSize, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE, MAX_RICE_K,
} from './codecs.ts';
export type { ValueBits, ValueCodecImpl, IndexCodecImpl, ValueEncodeOptions, ValueDecodeParams } from './codecs.ts';
export { selectTopK } from './topk.ts';
export type { TopKOptions } from './topk.ts';
export { encodeTensor, decodeTensor, encodeUpdate, decodeUpdate, resolveShape } from './encode.ts';
export type { TensorEncodeOptions, UpdateEncodeOptions, ByteAccounting, EncodedUpdate } from './encode.ts';
export { ErrorFeedback, encodeWithErrorFeedback } from './error-feedback.ts';
export { f32ToF16Bits, f16BitsToF32, F16_MAX } from './fp16.ts';
export { tensorDelta, applyDelta, flattenTensors, unflattenTensors } from './tensor-math.ts';
