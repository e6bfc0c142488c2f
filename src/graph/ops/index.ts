/**
 * The op table, built from one module per op (or per small op family sharing a shape rule or VJP helper).
 * Every declaration is registered here, in one place, so the table is complete as soon as the graph package is
 * imported; `defineOp` stays public for extensions that add ops with their own VJPs.
 */
import { defineOp, type OpDef } from './registry.ts';
import { ops as argmax } from './argmax.ts';
import { ops as attention } from './attention.ts';
import { ops as binary } from './binary.ts';
import { ops as cast } from './cast.ts';
import { ops as clip } from './clip.ts';
import { ops as concat } from './concat.ts';
import { ops as conv } from './conv.ts';
import { ops as expand } from './expand.ts';
import { ops as gather } from './gather.ts';
import { ops as gelu } from './gelu.ts';
import { ops as identity } from './identity.ts';
import { ops as layerNorm } from './layer-norm.ts';
import { ops as matmulT } from './matmul-t.ts';
import { ops as matmul } from './matmul.ts';
import { ops as pad } from './pad.ts';
import { ops as reduce } from './reduce.ts';
import { ops as reshape } from './reshape.ts';
import { ops as slice } from './slice.ts';
import { ops as softmax } from './softmax.ts';
import { ops as split } from './split.ts';
import { ops as squeeze } from './squeeze.ts';
import { ops as transpose } from './transpose.ts';
import { ops as unary } from './unary.ts';

const MODULES: readonly (readonly OpDef[])[] = [
  binary, unary, argmax, identity, cast, matmul, matmulT, attention, reduce, softmax, reshape, transpose, expand,
  squeeze, concat, split, slice, pad, gather, layerNorm, gelu, conv, clip,
];
for (const defs of MODULES) for (const def of defs) defineOp(def);

export { defineOp, getOp, opNames, type Emitter, type OpDef, type TypeInfo } from './registry.ts';
export { broadcastShapes } from './shape-rules.ts';
export { sumToShape, zerosLike } from './grad-helpers.ts';
export * from './api.ts';
