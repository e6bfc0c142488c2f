/**
 * Gather, ScatterAdd and GatherElements (each one's VJP uses ScatterAdd).
 */
import { GraphError, shapeEq } from '../graph.ts';
import { emitSame, type OpDef } from './registry.ts';
import { normAxis } from './shape-rules.ts';
import { zerosLike } from './grad-helpers.ts';
import { add, cast, reshape, expand, slice, gatherElements, scatterAdd } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

ops.push({
  name: 'Gather',
  infer: (ins, attrs) => {
    const [x, idx] = ins;
    if (idx.dtype !== 'int64' && idx.dtype !== 'int32') throw new GraphError('Gather', 'indices must be int32 or int64');
    const axis = normAxis('Gather', attrs.axis as number, x.rank);
    return [{ shape: [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)], dtype: x.dtype }];
  },
  emit: emitSame('Gather'),
  vjp: (n, [g], needs) => {
    if (!needs[0]) return [null, null];
    const [x, idx] = n.inputs;
    const axis = normAxis('Gather', n.attrs.axis as number, x.rank);
    // Scatter-add the gradient rows back: ScatterElements(zeros, indices broadcast to g, g, reduction=add).
    const k = idx.size;
    const gShape = [...x.shape.slice(0, axis), k, ...x.shape.slice(axis + 1)];
    const g2 = reshape(g!, gShape);
    const idxShape = gShape.map((_, i) => (i === axis ? k : 1));
    const idxB = expand(reshape(cast(idx, 'int64'), idxShape), gShape);
    return [scatterAdd(zerosLike(x), idxB, g2, axis), null];
  },
});

/** ScatterElements with reduction 'add' (opset 16). Indices must be in range and non-negative. */
ops.push({
  name: 'ScatterAdd',
  infer: (ins) => {
    const [x, idx, upd] = ins;
    if (!shapeEq(idx.shape, upd.shape)) throw new GraphError('ScatterAdd', 'indices and updates must have one shape');
    if (upd.dtype !== x.dtype) throw new GraphError('ScatterAdd', 'dtype mismatch');
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  emit: (e, n) => e.node('ScatterElements', n.inputs.map((t) => e.name(t)), [e.name(n.outputs[0])], { axis: n.attrs.axis as number, reduction: 'add' }),
  vjp: (n, [g], needs) => {
    const [, idx] = n.inputs;
    const axis = n.attrs.axis as number;
    return [needs[0] ? g : null, null, needs[2] ? gatherElements(g!, idx, axis) : null];
  },
});

ops.push({
  name: 'GatherElements',
  infer: (ins) => [{ shape: ins[1].shape, dtype: ins[0].dtype }],
  emit: emitSame('GatherElements'),
  vjp: (n, [g], needs) => {
    const [x, idx] = n.inputs;
    return [needs[0] ? scatterAdd(zerosLike(x), idx, g!, n.attrs.axis as number) : null, null];
  },
});
