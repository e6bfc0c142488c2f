/**
 * MatMulT (onnxruntime's FusedMatMul).
 */
import { GraphError, type Tensor } from '../graph.ts';
import { type OpDef } from './registry.ts';
import { sameFloat } from './shape-rules.ts';
import { where, matmul, matmulT, transpose, slice } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

/**
 * C = alpha · op(A) · op(B) with op = transpose of the last two axes where transA / transB is set: onnxruntime's
 * contrib FusedMatMul (com.microsoft). Attention uses it for Q·Kᵀ so that K never has to be materialized in the
 * [B, h, hd, n] layout (that Transpose cost more than the matmul on 2 cores). Batch axes must match exactly.
 * VJP, with g = dC: (A·Bᵀ) dA = α g·B, dB = α gᵀ·A; (A·B) dA = α g·Bᵀ, dB = α Aᵀ·g; (Aᵀ·B) dA = α B·gᵀ,
 * dB = α A·g; (Aᵀ·Bᵀ) dA = α Bᵀ·gᵀ, dB = α gᵀ·Aᵀ: each one FusedMatMul.
 */
ops.push({
  name: 'MatMulT',
  infer: (ins, attrs) => {
    const [a, b] = ins;
    const dt = sameFloat('MatMulT', ins);
    if (a.rank < 2 || a.rank !== b.rank) throw new GraphError('MatMulT', 'operands must have the same rank >= 2');
    if (a.shape.slice(0, -2).some((d, i) => d !== b.shape[i])) throw new GraphError('MatMulT', `batch axes differ: [${a.shape.join(',')}] x [${b.shape.join(',')}]`);
    if (typeof attrs.alpha !== 'number' || !Number.isFinite(attrs.alpha)) throw new GraphError('MatMulT', 'alpha must be a finite number');
    const [a0, a1] = a.shape.slice(-2);
    const [b0, b1] = b.shape.slice(-2);
    const [m, k] = attrs.transA ? [a1, a0] : [a0, a1];
    const [k2, n] = attrs.transB ? [b1, b0] : [b0, b1];
    if (k !== k2) throw new GraphError('MatMulT', `inner dims differ: [${a.shape.join(',')}]${attrs.transA ? 'ᵀ' : ''} x [${b.shape.join(',')}]${attrs.transB ? 'ᵀ' : ''}`);
    return [{ shape: [...a.shape.slice(0, -2), m, n], dtype: dt }];
  },
  emit: (e, n) => e.node('FusedMatMul', n.inputs.map((t) => e.name(t)), [e.name(n.outputs[0])], { alpha: n.attrs.alpha as number, transA: n.attrs.transA as number, transB: n.attrs.transB as number }, 'com.microsoft'),
  vjp: (n, [g], needs) => {
    const [a, b] = n.inputs;
    const al = n.attrs.alpha as number;
    const tA = n.attrs.transA === 1;
    const tB = n.attrs.transB === 1;
    let ga: Tensor | null = null;
    let gb: Tensor | null = null;
    if (needs[0]) ga = !tA ? matmulT(g!, b, { transB: !tB, alpha: al }) : tB ? matmulT(b, g!, { transA: true, transB: true, alpha: al }) : matmulT(b, g!, { transB: true, alpha: al });
    if (needs[1]) gb = !tB ? (tA ? matmulT(a, g!, { alpha: al }) : matmulT(a, g!, { transA: true, alpha: al })) : tA ? matmulT(g!, a, { transA: true, transB: true, alpha: al }) : matmulT(g!, a, { transA: true, alpha: al });
    return [ga, gb];
  },
});
