/**
 * Rewrites of exporter compositions into the ops fmfl builds natively, applied to the node list before anything
 * else: PyTorch (and most exporters before opset 20) write exact GELU as `x · 0.5 · (1 + erf(x / √2))` in five
 * nodes; built op by op, its backward is five VJPs and their intermediates. One `Gelu` node instead maps onto
 * ORT's fused Gelu with its own VJP, as the native ViT uses. The import's forward check against onnxruntime's run
 * of the original file covers the rewrite.
 */
import { constantNode } from './fold.ts';
import type { ConstValue, IrNode } from './ir.ts';

const near = (v: ConstValue | undefined, x: number): boolean => !!v && v.data.length === 1 && Math.abs(v.data[0] - x) <= 1e-6 * Math.max(1, Math.abs(x));

/** Who produces and how many read each value, and the constant behind a name (initializer or Constant node). */
export interface NodeIndex {
  producer: Map<string, IrNode>;
  readers: Map<string, number>;
  constOf(name: string): ConstValue | undefined;
  /** The producer of `name` when that is its only reader (so the producer can be fused away). */
  only(name: string): IrNode | undefined;
}

export function nodeIndex(nodes: readonly IrNode[], consts: ReadonlyMap<string, ConstValue>, outputs: readonly string[]): NodeIndex {
  const producer = new Map<string, IrNode>();
  const readers = new Map<string, number>();
  for (const n of nodes) {
    for (const o of n.outputs) producer.set(o, n);
    for (const i of n.inputs) readers.set(i, (readers.get(i) ?? 0) + 1);
  }
  for (const o of outputs) readers.set(o, (readers.get(o) ?? 0) + 1);
  const constOf = (name: string): ConstValue | undefined => {
    const c = consts.get(name);
    if (c) return c;
    const p = producer.get(name);
    if (p?.op !== 'Constant') return undefined;
    try {
      return constantNode(p);
    } catch {
      return undefined;
    }
  };
  const only = (name: string): IrNode | undefined => (readers.get(name) === 1 ? producer.get(name) : undefined);
  return { producer, readers, constOf, only };
}

/**
 * Replace each exact-GELU composition (Div by √2 or Mul by 1/√2, Erf, Add 1, Mul by x, Mul by 0.5, in either
 * operand order) whose intermediates nothing else reads by one `Gelu` node named after its Erf node.
 */
export function fuseGelu(nodes: readonly IrNode[], consts: ReadonlyMap<string, ConstValue>, outputs: readonly string[]): IrNode[] {
  const { constOf, only } = nodeIndex(nodes, consts, outputs);
  /** [other operand, node] when `n` is a binary op of `op` with one operand a constant near `value`. */
  const withConst = (n: IrNode | undefined, op: string, value: number, commutes = true): string | undefined => {
    if (!n || n.op !== op || n.inputs.length !== 2) return undefined;
    if (near(constOf(n.inputs[1]), value)) return n.inputs[0];
    if (commutes && near(constOf(n.inputs[0]), value)) return n.inputs[1];
    return undefined;
  };
  const drop = new Set<IrNode>();
  const replace = new Map<IrNode, IrNode>();
  for (const last of nodes) {
    if (last.op !== 'Mul') continue;
    // y = Mul(m, 0.5) with m = Mul(x, a), or y = Mul(x, Mul(a, 0.5)) is not produced by torch; only the first form.
    const mName = withConst(last, 'Mul', 0.5);
    const m = mName ? only(mName) : undefined;
    if (!m || m.op !== 'Mul') continue;
    for (const [xName, aName] of [[m.inputs[0], m.inputs[1]], [m.inputs[1], m.inputs[0]]]) {
      const add = only(aName);
      const eName = withConst(add, 'Add', 1);
      const erf = eName ? only(eName) : undefined;
      if (!erf || erf.op !== 'Erf') continue;
      const d = only(erf.inputs[0]);
      const src = withConst(d, 'Div', Math.SQRT2, false) ?? withConst(d, 'Mul', Math.SQRT1_2);
      if (src !== xName) continue;
      for (const n of [d!, erf, add!, m]) drop.add(n);
      replace.set(last, { op: 'Gelu', name: erf.name.replace(/Erf(_\d+)?$/, 'Gelu$1'), inputs: [xName], outputs: [last.outputs[0]], attrs: {} });
      break;
    }
  }
  return nodes.filter((n) => !drop.has(n)).map((n) => replace.get(n) ?? n);
}
