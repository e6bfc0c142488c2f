/**
 * Rewrite of the exported attention core into the native ViT's Attention composite (src/graph/ops/attention.ts).
 * PyTorch writes `softmax((q @ k.transpose(-2, -1)) * s) @ v` as Transpose(k), MatMul, Mul (or Div), Softmax,
 * MatMul: built op by op, its backward is the generic MatMul and Softmax VJPs plus the explicit [.., d, m] transpose
 * of k forward and back. The composite runs the forward as FusedMatMul (transB, the scale folded in), Softmax,
 * MatMul, and its VJP needs no transpose and one pass less over the [n, m] scores. Measured on the reference ViT's
 * LoRA step: see the README's import speed table.
 *
 * The rewrite keeps the original nodes' meaning exactly: the one IR node `fmfl.Attention` (attrs `scale`, `axis`)
 * is built as the composite only when q, k, v have the composite's shapes and the softmax axis is the last one, and
 * as the original chain otherwise (build.ts). The import's forward check against onnxruntime's run of the original
 * file covers it, and test/unit/onnx-fuse.test.ts checks forward and gradients against the unrewritten graph.
 */
import type { ConstValue, IrNode } from './ir.ts';
import { nodeIndex } from './fuse.ts';

/** The IR op the rewrite emits (a name no ONNX domain uses, so an imported file cannot contain it). */
export const ATTENTION_OP = 'fmfl.Attention';

/**
 * Replace each MatMul(q, Transpose(k)) → [Mul or Div by a scalar constant] → Softmax → MatMul(·, v) chain whose
 * intermediates nothing else reads, and whose Transpose swaps the last two axes of k (possibly composed with the
 * exporter's head transpose, then a Transpose with the swap undone is kept for k), by one `fmfl.Attention` node.
 */
export function fuseAttention(nodes: readonly IrNode[], consts: ReadonlyMap<string, ConstValue>, outputs: readonly string[]): IrNode[] {
  const { constOf, only } = nodeIndex(nodes, consts, outputs);
  const scalar = (name: string): number | undefined => {
    const c = constOf(name);
    return c && c.data.length === 1 && (c.dtype === 'float32' || c.dtype === 'float64') ? c.data[0] : undefined;
  };
  const drop = new Set<IrNode>();
  const replace = new Map<IrNode, IrNode[]>();
  for (const out of nodes) {
    if (out.op !== 'MatMul' || out.inputs.length !== 2) continue;
    const sm = only(out.inputs[0]);
    if (!sm || sm.op !== 'Softmax') continue;
    let scale = 1;
    let mm = only(sm.inputs[0]);
    let scaleNode: IrNode | undefined;
    if (mm && (mm.op === 'Mul' || mm.op === 'Div') && mm.inputs.length === 2) {
      const c1 = scalar(mm.inputs[1]);
      const c0 = mm.op === 'Mul' ? scalar(mm.inputs[0]) : undefined;
      const [c, other] = c1 !== undefined ? [c1, mm.inputs[0]] : c0 !== undefined ? [c0, mm.inputs[1]] : [undefined, ''];
      if (c === undefined || !Number.isFinite(c) || (mm.op === 'Div' && c === 0)) continue;
      scale = mm.op === 'Mul' ? c : 1 / c;
      scaleNode = mm;
      mm = only(other);
    }
    if (!mm || mm.op !== 'MatMul' || mm.inputs.length !== 2) continue;
    const tr = only(mm.inputs[1]);
    const perm = tr?.op === 'Transpose' ? tr.attrs.perm : undefined;
    if (!tr || !Array.isArray(perm) || perm.length < 3) continue;
    const r = perm.length;
    // k = Transpose(x, perm with the last two entries swapped): then kT = swapLast2(k).
    const kPerm = [...perm.slice(0, r - 2), perm[r - 1], perm[r - 2]];
    const identity = kPerm.every((p, i) => p === i);
    const kName = identity ? tr.inputs[0] : `${tr.outputs[0]}::attention_k`;
    const fused: IrNode[] = [];
    if (!identity) fused.push({ op: 'Transpose', name: `${tr.name}::attention_k`, inputs: [tr.inputs[0]], outputs: [kName], attrs: { perm: kPerm } });
    fused.push({ op: ATTENTION_OP, name: out.name.replace(/MatMul(_\d+)?$/, 'Attention$1'), inputs: [mm.inputs[0], kName, out.inputs[1]], outputs: [out.outputs[0]], attrs: { scale, ...(typeof sm.attrs.axis === 'number' ? { axis: sm.attrs.axis } : {}) } });
    for (const n of [tr, mm, sm, ...(scaleNode ? [scaleNode] : [])]) drop.add(n);
    replace.set(out, fused);
  }
  return nodes.filter((n) => !drop.has(n)).flatMap((n) => replace.get(n) ?? [n]);
}
