/**
 * MatMul (batched, numpy semantics; both operands rank >= 2).
 */
import { GraphError, type Tensor } from '../graph.ts';
import { emitSame, type OpDef } from './registry.ts';
import { broadcastShapes, sameFloat } from './shape-rules.ts';
import { sumToShape, transposeLast2, weightGrad } from './grad-helpers.ts';
import { matmul, matmulT, attention, transpose, slice } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

ops.push({
  name: 'MatMul',
  infer: (ins) => {
    const [a, b] = ins;
    const dt = sameFloat('MatMul', ins);
    if (a.rank < 2 || b.rank < 2) throw new GraphError('MatMul', 'operands must have rank >= 2');
    const [m, k] = a.shape.slice(-2);
    const [k2, n] = b.shape.slice(-2);
    if (k !== k2) throw new GraphError('MatMul', `inner dims differ: [${a.shape.join(',')}] x [${b.shape.join(',')}]`);
    const batch = broadcastShapes('MatMul', a.shape.slice(0, -2), b.shape.slice(0, -2));
    return [{ shape: [...batch, m, n], dtype: dt }];
  },
  emit: emitSame('MatMul'),
  vjp: (n, [g], needs) => {
    const [a, b] = n.inputs;
    let ga: Tensor | null = null;
    let gb: Tensor | null = null;
    // Batched operands with the same batch axes (attention's P·V): one FusedMatMul per gradient with the
    // transpose folded in. An explicit transpose here would be merged by onnxruntime with the head transpose
    // that produced the operand into one [B, h, d, n] transpose, which costs more than the matmul itself.
    const sameBatch = a.rank === b.rank && a.rank >= 3 && a.shape.slice(0, -2).every((d, i) => d === b.shape[i]);
    if (needs[0]) ga = sameBatch ? matmulT(g!, b, { transB: true }) : sumToShape(matmul(g!, transposeLast2(b)), a.shape);
    if (needs[1] && sameBatch) gb = matmulT(a, g!, { transA: true });
    else if (needs[1]) {
      if (b.rank === 2 && a.rank > 2) {
        // Weight gradient of a batched activation: the batch flattened into rows.
        gb = weightGrad(a, g!);
      } else {
        gb = sumToShape(matmul(transposeLast2(a), g!), b.shape);
      }
    }
    return [ga, gb];
  },
});
