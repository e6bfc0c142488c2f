/**
 * Deploy-time inference: anytime multi-exit prediction on one node, collaborative prediction across peers
 * (/fmfl/<federation>/infer/1.0.0, protocols/infer.md), the HTTP endpoint and the `infer` command.
 */
export { AnytimeModel, planExit, INFER_BATCHES, MAX_INFER_BATCH, PREDICT_MODES, DEFAULT_SEGMENT_THREADS } from './anytime.ts';
export type { AnytimeModelOptions, ExitLatency, ForwardOptions, ForwardResult, Prediction, PredictMode } from './anytime.ts';
export { softmax, argmax, prototypeProbs, meanProbs, combineProbs, isProbVector, COMBINE_RULES, PROTOTYPE_TEMPERATURE } from './combine.ts';
export type { CombineRule } from './combine.ts';
export { InferError } from './errors.ts';
export type { InferErrorCode } from './errors.ts';
export { decodeInputImage, parseJsonImages, parseInputBytes, normalizeImages, MAX_IMAGE_INPUT_BYTES, MAX_PNG_BYTES, MAX_JSON_IMAGES } from './input.ts';
export * from './limits.ts';
export { InferService, InferStatus, TokenBucket, validateInferRequest, validateInferResponse, latencyFeatures, parseLatencyFeatures } from './service.ts';
export type { InferServiceOptions, CollaborateOptions, CollaborativeResult, PeerAnswer, IgnoredReason, AnswerExpectation, ValidRequest } from './service.ts';
export { startPredictServer, predictRequestHandler, DEFAULT_HTTP_HOST, DEFAULT_HTTP_PORT, MAX_HTTP_BODY_BYTES, MAX_HTTP_UPLOAD_BYTES, MAX_HTTP_CONCURRENT, PredictHttpError } from './http.ts';
export type { PredictHttpCode } from './http-body.ts';
export type { PredictServer, PredictServerOptions } from './http.ts';
export { openModel } from './load.ts';
export type { OpenModelOptions } from './load.ts';
export { NodeInference, InferConfigSchema } from './node-inference.ts';
export type { InferConfig } from './node-inference.ts';
export { registerInferCommand, runInfer, FASHION_MNIST_CLASSES } from './cli.ts';
export type { InferFlags, InferIo } from './cli.ts';
