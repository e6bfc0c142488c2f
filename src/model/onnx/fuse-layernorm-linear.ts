/**
 * Rewrite of a LayerNorm and the Linears that read it (attention's q/k/v or fused qkv, the MLP's fc1: each a MatMul
 * by a constant weight, then an Add of a constant bias) into the native ViT's LayerNormLinear composite
 * (src/graph/ops/layer-norm.ts), whose VJP folds LayerNorm's scale and centring into the maps' dx GEMMs instead of
 * differentiating LayerNorm, the MatMuls and the Adds one by one.
 *
 * The fused IR node `fmfl.LayerNormLinear` keeps the LayerNorm's name and lists its MatMuls' names (attr `matmuls`,
 * a JSON array, one per map), so `--lora-targets` matches each MatMul as before (structure.ts lists every map as a
 * MatMul candidate) and build.ts merges each map's LoRA into its weight, as the native ViT does for q and v. It is
 * built as the composite when the shapes and dtypes fit (float x of rank >= 2 normalized over its last axis, [d]
 * scale and bias, [d, o] weights, [o] biases), and as the original ops otherwise. The import's forward check
 * against onnxruntime and test/unit/onnx-fuse.test.ts (forward and gradients against the unrewritten graph) cover it.
 */
import type { ConstValue, IrNode } from './ir.ts';
import { nodeIndex } from './fuse.ts';

/** The IR op the rewrite emits (a name no ONNX domain uses). */
export const LAYERNORM_LINEAR_OP = 'fmfl.LayerNormLinear';

/** The MatMul node names of a fused node, one per map, in input order. */
export function fusedMatMuls(n: IrNode): string[] {
  const v = n.attrs.matmuls;
  const names: unknown = typeof v === 'string' ? JSON.parse(v) : [];
  return Array.isArray(names) ? names.map(String) : [];
}

/**
 * Replace each LayerNormalization (only its first output used, scale and bias given) whose output every reader is
 * a MatMul(·, W) → Add(·, b) chain, W and b in `constants` (initializer names), each MatMul output read only by its
 * Add and no Add output a graph output (so `--keep-head` still finds a classifier), by one `fmfl.LayerNormLinear`
 * node with inputs [x, scale, bias, W_1, b_1, ..., W_k, b_k] and outputs the Adds' outputs. Shape / Size readers
 * of the output then read the LayerNorm's input (the same shape). A LayerNorm with any other reader is left alone.
 */
export function fuseLayerNormLinear(nodes: readonly IrNode[], consts: ReadonlyMap<string, ConstValue>, outputs: readonly string[], constants: ReadonlySet<string>): IrNode[] {
  const { producer, readers } = nodeIndex(nodes, consts, outputs);
  const readersOf = new Map<string, IrNode[]>();
  for (const n of nodes) for (const i of new Set(n.inputs)) if (i) readersOf.set(i, [...(readersOf.get(i) ?? []), n]);
  const graphOut = new Set(outputs);
  const isConst = (name: string): boolean => constants.has(name) && !producer.has(name);
  const drop = new Set<IrNode>();
  const replace = new Map<IrNode, IrNode>();
  for (const ln of nodes) {
    if (ln.op !== 'LayerNormalization' || ln.inputs.length < 3 || !ln.inputs[2] || ln.outputs.slice(1).some(Boolean)) continue;
    const y = ln.outputs[0];
    const rs = readersOf.get(y) ?? [];
    if (rs.length === 0 || graphOut.has(y) || readers.get(y) !== rs.length) continue;
    const maps: { mm: IrNode; add: IrNode; bias: string }[] = [];
    // Shape readers (`B, N, C = x.shape` in the exporter's attention) read the LayerNorm input instead: same shape.
    const shapeOf = rs.filter((r) => (r.op === 'Shape' || r.op === 'Size') && r.inputs.length === 1);
    for (const mm of rs) {
      if (shapeOf.includes(mm)) continue;
      if (mm.op !== 'MatMul' || mm.inputs.length !== 2 || mm.inputs[0] !== y || !isConst(mm.inputs[1]) || readers.get(mm.outputs[0]) !== 1) break;
      const add = readersOf.get(mm.outputs[0])?.[0];
      if (!add || add.op !== 'Add' || add.inputs.length !== 2 || graphOut.has(add.outputs[0])) break;
      const bias = add.inputs[0] === mm.outputs[0] ? add.inputs[1] : add.inputs[0];
      if (!isConst(bias)) break;
      maps.push({ mm, add, bias });
    }
    if (maps.length === 0 || maps.length + shapeOf.length !== rs.length) continue;
    for (const { mm, add } of maps) drop.add(mm).add(add);
    for (const r of shapeOf) replace.set(r, { ...r, inputs: [ln.inputs[0]] });
    replace.set(ln, {
      op: LAYERNORM_LINEAR_OP,
      name: ln.name,
      inputs: [ln.inputs[0], ln.inputs[1], ln.inputs[2], ...maps.flatMap((m) => [m.mm.inputs[1], m.bias])],
      outputs: maps.map((m) => m.add.outputs[0]),
      attrs: { ...ln.attrs, count: maps.length, matmuls: JSON.stringify(maps.map((m) => m.mm.name)) },
    });
  }
  return nodes.filter((n) => !drop.has(n)).map((n) => replace.get(n) ?? n);
}

/**
 * The inverse rewrite: each `fmfl.LayerNormLinear` node back to LayerNormalization, then MatMul (under its own name)
 * and Add per map (scripts/bench-import.ts times the import without the rewrite against it, in the same run).
 */
export function unfuseLayerNormLinear(nodes: readonly IrNode[]): IrNode[] {
  return nodes.flatMap((n) => {
    if (n.op !== LAYERNORM_LINEAR_OP) return [n];
    const { count: _c, matmuls: _m, ...attrs } = n.attrs;
    const y = `${n.outputs[0]}::layernorm`;
    return [
      { op: 'LayerNormalization', name: n.name, inputs: n.inputs.slice(0, 3), outputs: [y], attrs },
      ...fusedMatMuls(n).flatMap((mm, j): IrNode[] => [
        { op: 'MatMul', name: mm, inputs: [y, n.inputs[3 + 2 * j]], outputs: [`${n.outputs[j]}::matmul`], attrs: {} },
        { op: 'Add', name: `${mm}::bias`, inputs: [`${n.outputs[j]}::matmul`, n.inputs[4 + 2 * j]], outputs: [n.outputs[j]], attrs: {} },
      ]),
    ];
  });
}
