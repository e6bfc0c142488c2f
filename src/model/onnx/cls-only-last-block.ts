/**
 * The last block for the CLS row only, as the native ViT builds it (src/model/vit.ts `vitBlock(..., clsOnly)`): in
 * the training forward the last exit tensor [B, n, d] is read by its fresh exit head at token 0 only, so the last
 * block's residual stream, MLP, LayerNorms, attention output and queries are needed for row 0 only, while keys
 * and values need every token. The import otherwise computes every token there.
 *
 * This rewrite works on the nodes of the last segment (from the previous exit tensor to the last one) with the
 * shapes of a probe build at the step's batch. Walking back from the last exit tensor, a node runs "by rows" when
 * every reader of its outputs needs only the token-0 row of them (along a tracked token axis) and its op is one
 * whose row 0 depends on its inputs' row 0 alone: element-wise ops (a broadcast operand that has no token axis is
 * read whole), LayerNormalization over the last axis, MatMul by a 2-D weight, Gelu and the fused LayerNormLinear /
 * GeluLinear, Transpose, Reshape and scalar-index Gather / Squeeze / Unsqueeze that keep the token axis whole, and
 * the fused Attention's query side (keys and values read whole). Any other node (Concat, Slice, Split, Softmax over
 * the tokens, a reduction, an op not listed) runs as imported, on every token, and the row-wise nodes reading it
 * take its row 0 through an inserted Slice. A LayerNormLinear whose maps are needed partly by rows (q) and partly
 * whole (k, v) is split into two nodes of the same name, each map keeping its MatMul's name, so LoRA sites and
 * `--lora-targets` are untouched. Shape plumbing (nodes the probe folds to constants) is taken from the full-size
 * probe, so a Shape node never reads a row.
 *
 * The rewrite fires only when the last exit tensor's producer runs by rows; otherwise the graph is built as
 * imported. Only the forward of training / evaluation uses it (`forward` of the imported architecture): segments
 * for anytime inference keep full-sequence exit tensors, as the native ViT's segments do. A kept classifier
 * (`--keep-head`) reads the last exit tensor through the model's own graph, so the rewrite does not fire there.
 * test/unit/onnx-cls-only.test.ts checks the forward and LoRA gradients against the graph without it.
 */
import type { ConstValue, IrNode } from './ir.ts';
import { LAYERNORM_LINEAR_OP, fusedMatMuls } from './fuse-layernorm-linear.ts';
import { GELU_LINEAR_OP } from './fuse-gelu-linear.ts';
import { ATTENTION_OP } from './fuse-attention.ts';

/** How a reader needs a value: row 0 along `axis`, or whole. */
type Need = { row: number } | 'whole';

/** The last segment rewritten: nodes to build in place of the segment's, extra constants, and whether it fired. */
export interface ClsOnlyPlan {
  nodes: IrNode[];
  consts: Map<string, ConstValue>;
  /** The last exit tensor as built: [B, 1, d] (token 0 of the original). */
  target: string;
  /** Nodes that run by rows (for tests and `--list`). */
  rowNodes: number;
}

const UNARY = new Set(['Identity', 'Dropout', 'Gelu', 'Erf', 'Relu', 'Sigmoid', 'Tanh', 'Exp', 'Neg', 'Sqrt', 'Log', 'Cast', 'HardSigmoid', 'HardSwish']);
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div']);

const int64 = (data: number[]): ConstValue => ({ dtype: 'int64', shape: [data.length], data });
const prod = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/**
 * Plan the last segment `segment` (graph order) whose output `target` ([B, n, d], n ≥ 2) is read at token 0 of
 * axis 1 only. `shapes` gives the probe's tensor shapes at the step's batch (a name absent from it is a constant);
 * `constOf` the probe's folded constants. Returns null when the rewrite does not fire.
 */
export function planClsOnly(segment: readonly IrNode[], target: string, shapes: ReadonlyMap<string, readonly number[]>, constOf: (name: string) => ConstValue | undefined): ClsOnlyPlan | null {
  const ts = shapes.get(target);
  if (!ts || ts.length !== 3 || ts[1] < 2) return null;
  const isTensor = (v: string): boolean => !!v && shapes.has(v);
  // Nodes that build tensors (the folded shape plumbing comes from the probe).
  const nodes = segment.filter((n) => n.outputs.some(isTensor));
  const needs = new Map<string, Need[]>();
  const want = (v: string, need: Need): void => {
    if (isTensor(v)) needs.set(v, [...(needs.get(v) ?? []), need]);
  };
  want(target, { row: 1 });
  /** The row axis a value is needed at, null when any reader needs it whole (or readers disagree), undefined when unused. */
  const rowOf = (v: string): number | null | undefined => {
    const ns = needs.get(v);
    if (!ns || ns.length === 0) return undefined;
    const a = ns[0] === 'whole' ? null : ns[0].row;
    return a !== null && ns.every((x) => x !== 'whole' && x.row === a) ? a : null;
  };
  /** Per row-mode node: the row axis of each tensor input (null: read whole), and of each output (null: whole, undefined: unused). */
  const plan = new Map<IrNode, { ins: (number | null)[]; outs: (number | null | undefined)[] }>();
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k];
    const outs = n.outputs.map((o) => (isTensor(o) ? rowOf(o) : undefined));
    const ins = rowInputs(n, outs, shapes, constOf);
    if (ins && ins.every((a, i) => a === null || isTensor(n.inputs[i]))) {
      plan.set(n, { ins, outs });
      n.inputs.forEach((v, i) => want(v, ins[i] === null ? 'whole' : { row: ins[i]! }));
      // A LayerNormLinear split in two reads its input by rows (q) and whole (k, v).
      if (n.op === LAYERNORM_LINEAR_OP && outs.some((a) => a === null)) want(n.inputs[0], 'whole');
    } else for (const v of n.inputs) want(v, 'whole');
  }
  const producer = nodes.find((n) => n.outputs.includes(target));
  if (!producer || !plan.has(producer)) return null;

  // Build: row-mode nodes read row inputs (their producer ran by rows, or a Slice of the whole value) and write rows.
  const consts = new Map<string, ConstValue>();
  const asRow = new Set<string>();
  const sliced = new Map<string, string>();
  const out: IrNode[] = [];
  const rowInput = (v: string, a: number): string => {
    if (asRow.has(v)) return v;
    const key = `${v}::row${a}`;
    if (!sliced.has(key)) {
      consts.set(`${key}::starts`, int64([0])).set(`${key}::ends`, int64([1])).set(`${key}::axes`, int64([a]));
      out.push({ op: 'Slice', name: `${key}::slice`, inputs: [v, `${key}::starts`, `${key}::ends`, `${key}::axes`], outputs: [key], attrs: {} });
      sliced.set(key, key);
    }
    return key;
  };
  for (const n of nodes) {
    const p = plan.get(n);
    if (!p) {
      out.push(n);
      continue;
    }
    const inputs = n.inputs.map((v, i) => (p.ins[i] === null || !isTensor(v) ? v : rowInput(v, p.ins[i]!)));
    if (n.op === LAYERNORM_LINEAR_OP && p.outs.some((a) => a === null)) {
      // Maps needed by rows (q) on the row input, maps needed whole (k, v) on the whole input: two nodes.
      const names = fusedMatMuls(n);
      const part = (js: number[], x: string): IrNode => ({
        op: n.op, name: n.name, inputs: [x, n.inputs[1], n.inputs[2], ...js.flatMap((j) => [n.inputs[3 + 2 * j], n.inputs[4 + 2 * j]])],
        outputs: js.map((j) => n.outputs[j]), attrs: { ...n.attrs, count: js.length, matmuls: JSON.stringify(js.map((j) => names[j])) },
      });
      const rows = names.map((_, j) => j).filter((j) => typeof p.outs[j] === 'number');
      const whole = names.map((_, j) => j).filter((j) => p.outs[j] === null);
      out.push(part(rows, inputs[0]), part(whole, n.inputs[0]));
      rows.forEach((j) => asRow.add(n.outputs[j]));
      continue;
    }
    if (n.op === 'Reshape') {
      const shape = [...shapes.get(n.outputs[0])!];
      shape[p.outs[0]!] = 1;
      const name = `${n.outputs[0]}::rowshape`;
      consts.set(name, int64(shape));
      inputs[1] = name;
    }
    out.push({ ...n, inputs });
    n.outputs.forEach((o, j) => typeof p.outs[j] === 'number' && asRow.add(o));
  }
  return { nodes: out, consts, target, rowNodes: plan.size };
}

/**
 * The row axis each input is needed at when `n` runs by rows with its outputs needed at `outs` (null: an output
 * needed whole, undefined: unused), null for an input read whole; undefined when `n` cannot run by rows.
 */
function rowInputs(n: IrNode, outs: (number | null | undefined)[], shapes: ReadonlyMap<string, readonly number[]>, constOf: (name: string) => ConstValue | undefined): (number | null)[] | undefined {
  const used = outs.filter((a) => a !== undefined);
  if (used.length === 0) return undefined;
  const shape = (v: string): readonly number[] | undefined => shapes.get(v);
  const wholeRest = (first: number): (number | null)[] => n.inputs.map((_, i) => (i === 0 ? first : null));
  if (n.op === LAYERNORM_LINEAR_OP) {
    // Row maps and whole maps may mix (q by rows, k and v whole); the input's row axis is the rows' axis.
    const rows = used.filter((a): a is number => a !== null);
    const xs = shape(n.inputs[0]);
    if (rows.length === 0 || !xs || rows.some((a) => a !== rows[0]) || rows[0] >= xs.length - 1) return undefined;
    return wholeRest(rows[0]);
  }
  if (n.outputs.filter(Boolean).length !== 1 || used[0] === null) return undefined;
  const a = used[0]!;
  const os = shape(n.outputs[0]);
  if (!os || os[a] < 2) return undefined;
  const r = os.length;
  if (UNARY.has(n.op)) {
    const xs = shape(n.inputs[0]);
    return xs && xs.length === r ? wholeRest(a) : undefined;
  }
  if (BINARY.has(n.op) || (n.op === 'Pow' && !shape(n.inputs[1]))) {
    const ins: (number | null)[] = [];
    for (const v of n.inputs) {
      const s = shape(v) ?? constOf(v)?.shape;
      if (!s) return undefined;
      const ai = a - (r - s.length);
      if (ai < 0 || s[ai] === 1) ins.push(null);
      else if (s[ai] === os[a] && shape(v)) ins.push(ai);
      else return undefined;
    }
    return ins.some((x) => x !== null) ? ins : undefined;
  }
  if (n.op === 'LayerNormalization') {
    const ax = typeof n.attrs.axis === 'number' ? n.attrs.axis : -1;
    return (ax === -1 || ax === r - 1) && a < r - 1 ? wholeRest(a) : undefined;
  }
  if (n.op === 'MatMul') {
    const w = shape(n.inputs[1]);
    return w && w.length === 2 && shape(n.inputs[0])?.length === r && a < r - 1 ? wholeRest(a) : undefined;
  }
  if (n.op === GELU_LINEAR_OP) return a < r - 1 ? wholeRest(a) : undefined;
  if (n.op === ATTENTION_OP) {
    // softmax(q·kᵀ·s)·v over the last axis: row i of the output is row i of q against every key and value.
    const ax = typeof n.attrs.axis === 'number' ? n.attrs.axis : -1;
    return r >= 3 && a === r - 2 && (ax === -1 || ax === r - 1) && shape(n.inputs[0])?.length === r ? [a, null, null] : undefined;
  }
  if (n.op === 'Transpose') {
    const perm = n.attrs.perm;
    return Array.isArray(perm) && perm.length === r ? wholeRest(perm[a]) : undefined;
  }
  if (n.op === 'Reshape') {
    // The token axis must survive whole: same size and the same number of elements before it.
    const xs = shape(n.inputs[0]);
    if (!xs || n.attrs.allowzero) return undefined;
    const before = prod(os.slice(0, a));
    const ai = xs.findIndex((d, i) => d === os[a] && prod(xs.slice(0, i)) === before);
    return ai >= 0 ? wholeRest(ai) : undefined;
  }
  if (n.op === 'Gather') {
    const xs = shape(n.inputs[0]);
    const idx = constOf(n.inputs[1]);
    if (!xs || !idx || idx.shape.length !== 0) return undefined;
    const g0 = typeof n.attrs.axis === 'number' ? n.attrs.axis : 0;
    const g = g0 < 0 ? g0 + xs.length : g0;
    const ai = a < g ? a : a + 1;
    return ai !== g ? wholeRest(ai) : undefined;
  }
  if (n.op === 'Squeeze' || n.op === 'Unsqueeze') {
    const xs = shape(n.inputs[0]);
    const raw = n.inputs[1] ? constOf(n.inputs[1])?.data : (n.attrs.axes as number[] | undefined);
    if (!xs || !raw) return undefined;
    if (n.op === 'Squeeze') {
      const axes = raw.map((v) => (v < 0 ? v + xs.length : v));
      const kept = xs.map((_, i) => i).filter((i) => !axes.includes(i));
      return kept.length === r ? wholeRest(kept[a]) : undefined;
    }
    const axes = raw.map((v) => (v < 0 ? v + r : v));
    if (axes.includes(a)) return undefined;
    return wholeRest(a - axes.filter((v) => v < a).length);
  }
  return undefined;
}
