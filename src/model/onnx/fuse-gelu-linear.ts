/**
 * Rewrite of GELU followed by a Linear (the MLP's fc2: Gelu, MatMul by a constant weight, Add a constant bias) into
 * the native ViT's GeluLinear composite (src/graph/ops/gelu.ts), whose VJP recomputes GELU's derivative in one
 * chain instead of differentiating Gelu and MatMul separately. Runs after fuseGelu (fuse.ts), so it sees the one
 * `Gelu` node that pass writes for the Erf composition.
 *
 * The fused IR node `fmfl.GeluLinear` keeps the MatMul's node name, so `--lora-targets` matches it as before
 * (structure.ts lists it as a MatMul candidate) and build.ts merges LoRA into its weight. It is built as the
 * composite for a float32 x, a [d, o] weight and an [o] bias, and as the original ops otherwise; the import's
 * forward check against onnxruntime and test/unit/onnx-fuse.test.ts (forward and gradients against the unrewritten
 * graph) cover it.
 */
import type { ConstValue, IrNode } from './ir.ts';
import { nodeIndex } from './fuse.ts';

/** The IR op the rewrite emits (a name no ONNX domain uses). */
export const GELU_LINEAR_OP = 'fmfl.GeluLinear';

/**
 * Replace each Gelu → MatMul(·, W) → Add(·, b) chain, W and b in `constants` (initializer names) and the Gelu and
 * MatMul outputs read only by the next node, by one `fmfl.GeluLinear` node with inputs [x, W, b].
 */
export function fuseGeluLinear(nodes: readonly IrNode[], consts: ReadonlyMap<string, ConstValue>, outputs: readonly string[], constants: ReadonlySet<string>): IrNode[] {
  const { producer, readers } = nodeIndex(nodes, consts, outputs);
  const readerOf = new Map<string, IrNode>();
  for (const n of nodes) for (const i of n.inputs) readerOf.set(i, n);
  const drop = new Set<IrNode>();
  const replace = new Map<IrNode, IrNode>();
  for (const gelu of nodes) {
    if (gelu.op !== 'Gelu' || (gelu.attrs.approximate ?? 'none') !== 'none' || readers.get(gelu.outputs[0]) !== 1) continue;
    const mm = readerOf.get(gelu.outputs[0]);
    if (!mm || mm.op !== 'MatMul' || mm.inputs[0] !== gelu.outputs[0] || !constants.has(mm.inputs[1]) || readers.get(mm.outputs[0]) !== 1) continue;
    const add = readerOf.get(mm.outputs[0]);
    if (!add || add.op !== 'Add' || add.inputs.length !== 2) continue;
    const bias = add.inputs[0] === mm.outputs[0] ? add.inputs[1] : add.inputs[0];
    if (!constants.has(bias) || producer.has(bias)) continue;
    drop.add(gelu);
    drop.add(mm);
    replace.set(add, { op: GELU_LINEAR_OP, name: mm.name, inputs: [gelu.inputs[0], mm.inputs[1], bias], outputs: [add.outputs[0]], attrs: {} });
  }
  return nodes.filter((n) => !drop.has(n)).map((n) => replace.get(n) ?? n);
}
