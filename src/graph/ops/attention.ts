/**
 * The Attention composite.
 */
import { GraphError, type Tensor } from '../graph.ts';
import { type OpDef } from './registry.ts';
import { sameFloat } from './shape-rules.ts';
import { add, sub, mul, identity, matmulT, reduceSum, softmax, attention, slice } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

/**
 * Scaled dot-product attention core, o = softmax(scale·q·kᵀ)·v over the last two axes, as a composite with its own
 * VJP. Inputs q [..., n, d], k [..., m, d], v [..., m, e] (same batch axes); outputs o [..., n, e] and the
 * probabilities p [..., n, m]. Emitted as FusedMatMul, Softmax, MatMul. The VJP uses the identity
 * rowsum(dp ⊙ p) = rowsum(do ⊙ o) (FlashAttention's D term): ds = p ⊙ (dp − D) costs two passes over the
 * [n, m] scores instead of the three plus a reduction of softmax's generic VJP, and the scale folds into the
 * FusedMatMuls of dq and dk.
 */
ops.push({
  name: 'Attention',
  infer: (ins, attrs) => {
    const [q, k, v] = ins;
    const dt = sameFloat('Attention', ins);
    if (q.rank < 2 || k.rank !== q.rank || v.rank !== q.rank) throw new GraphError('Attention', 'q, k and v must have the same rank >= 2');
    const lead = q.shape.slice(0, -2);
    if (k.shape.slice(0, -2).some((d, i) => d !== lead[i]) || v.shape.slice(0, -2).some((d, i) => d !== lead[i])) {
      throw new GraphError('Attention', `batch axes differ: q [${q.shape.join(',')}], k [${k.shape.join(',')}], v [${v.shape.join(',')}]`);
    }
    const [n, d] = q.shape.slice(-2);
    const [m, dk] = k.shape.slice(-2);
    const [mv, e] = v.shape.slice(-2);
    if (d !== dk) throw new GraphError('Attention', `q and k feature sizes differ: ${d} vs ${dk}`);
    if (m !== mv) throw new GraphError('Attention', `k and v lengths differ: ${m} vs ${mv}`);
    if (typeof attrs.scale !== 'number' || !Number.isFinite(attrs.scale)) throw new GraphError('Attention', 'scale must be a finite number');
    return [{ shape: [...lead, n, e], dtype: dt }, { shape: [...lead, n, m], dtype: dt }];
  },
  emit: (e, n) => {
    const [q, k, v] = n.inputs.map((t) => e.name(t));
    const [o, pOut] = n.outputs;
    const s = e.temp();
    const p = e.isLive(pOut) ? e.name(pOut) : e.temp();
    e.node('FusedMatMul', [q, k], [s], { alpha: n.attrs.scale as number, transA: 0, transB: 1 }, 'com.microsoft');
    e.node('Softmax', [s], [p], { axis: -1 });
    e.node('MatMul', [p, v], [e.name(o)]);
  },
  vjp: (n, [go, gp], needs) => {
    const [q, k, v] = n.inputs;
    const [o, p] = n.outputs;
    const scale = n.attrs.scale as number;
    const last = q.rank - 1;
    let dp: Tensor | null = go ? matmulT(go, v, { transB: true }) : null;
    if (gp) dp = dp ? add(dp, gp) : gp;
    if (dp === null) return [null, null, null];
    // rowsum(dp ⊙ p), from the small [n, e] side when only o is used downstream.
    const rowDot = gp ? reduceSum(mul(dp, p), [last], true) : reduceSum(mul(go!, o), [last], true);
    const ds = needs[0] || needs[1] ? mul(p, sub(dp, rowDot)) : null;
    return [
      needs[0] ? matmulT(ds!, k, { alpha: scale }) : null,
      needs[1] ? matmulT(ds!, q, { transA: true, alpha: scale }) : null,
      needs[2] && go ? matmulT(p, go, { transA: true }) : null,
    ];
  },
});
