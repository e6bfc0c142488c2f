/**
 * What the importer reads off the graph's structure: the LoRA candidates (MatMul/Gemm nodes with a constant 2-D
 * weight), the repeated blocks and their outputs (the automatic exits), and the check that each exit tensor is a
 * block boundary (everything after it depends on it alone, so anytime segments can start there).
 */
import { GELU_LINEAR_OP } from './fuse-gelu-linear.ts';
import { LAYERNORM_LINEAR_OP, fusedMatMuls } from './fuse-layernorm-linear.ts';
import { buildProbe, nodesFor } from './build.ts';
import { OnnxImportError } from './read.ts';
import type { ExitSite, ImportedGraph, IrNode, LoraSite } from './ir.ts';

/** A MatMul/Gemm with a constant weight that LoRA can attach to. */
export interface LoraCandidate extends LoraSite {
  op: string;
}

/** LoRA tensor prefix from a node's module path: `/blocks.0/attn/qkv/MatMul` → `blocks.0.attn.qkv`. */
export function loraPrefix(nodeName: string): string {
  const parts = nodeName.split('/').filter(Boolean);
  const path = parts.length > 1 ? parts.slice(0, -1) : parts;
  return path.join('.').replace(/[^A-Za-z0-9_.-]/g, '_') || 'lora';
}

/** Every MatMul/Gemm whose weight is a 2-D initializer, with its [in, out] size. */
export function loraCandidates(ir: Pick<ImportedGraph, 'nodes' | 'weights'>): LoraCandidate[] {
  const shapes = new Map(ir.weights.map((w) => [w.onnx, w.shape]));
  const out: LoraCandidate[] = [];
  const used = new Set<string>();
  const add = (op: string, node: string, w: string, trans: boolean): void => {
    const shape = shapes.get(w);
    if (!shape || shape.length !== 2) return;
    let prefix = loraPrefix(node);
    for (let k = 2; used.has(prefix); k++) prefix = `${loraPrefix(node)}_${k}`;
    used.add(prefix);
    out.push({ op, node, weight: w, prefix, in: trans ? shape[1] : shape[0], out: trans ? shape[0] : shape[1] });
  };
  for (const n of ir.nodes) {
    // A fused LayerNorm + Linears node (fuse-layernorm-linear.ts) carries one MatMul per map, under its own name.
    if (n.op === LAYERNORM_LINEAR_OP) fusedMatMuls(n).forEach((mm, j) => add('MatMul', mm, n.inputs[3 + 2 * j], false));
    else if (n.op === 'MatMul' || n.op === GELU_LINEAR_OP) add('MatMul', n.name, n.inputs[1], false);
    else if (n.op === 'Gemm') add('Gemm', n.name, n.inputs[1], n.attrs.transB === 1);
  }
  return out;
}

/**
 * The LoRA sites a `--lora-targets` regex picks: candidates whose node name or weight name matches.
 * @throws OnnxImportError when the pattern is invalid or picks nothing.
 */
export function pickLoraSites(cands: readonly LoraCandidate[], pattern: string | undefined): LoraSite[] {
  if (pattern === undefined || pattern === '') return [];
  let re: RegExp;
  try {
    re = new RegExp(pattern);
  } catch (err) {
    throw new OnnxImportError('structure', `--lora-targets: invalid regular expression ${JSON.stringify(pattern)} (${(err as Error).message})`);
  }
  const picked = cands.filter((c) => re.test(c.node) || re.test(c.weight));
  if (picked.length === 0) {
    throw new OnnxImportError('structure', `--lora-targets ${JSON.stringify(pattern)} matches none of the ${cands.length} MatMul/Gemm nodes with a constant weight; list them with import-model --list (e.g. ${cands.slice(0, 3).map((c) => c.node).join(', ')})`);
  }
  return picked.map(({ node, weight, prefix, in: i, out }) => ({ node, weight, prefix, in: i, out }));
}

/** One family of repeated modules (`/blocks.0/…`, `/blocks.1/…`) and the tensor each instance hands on. */
export interface BlockFamily {
  /** Module path with the index as `#`, e.g. `/blocks.#`. */
  pattern: string;
  outputs: string[];
}

/**
 * Repeated blocks from the node names' module paths: the family with the most consecutive instances 0..n-1; each
 * instance's output is the one tensor it computes that nodes outside it read (shape plumbing excluded).
 */
export function blockFamilies(ir: ImportedGraph, isTensor: (name: string) => boolean): BlockFamily[] {
  const fam = new Map<string, Map<number, IrNode[]>>();
  for (const n of ir.nodes) {
    const parts = n.name.split('/');
    for (let k = 0; k < parts.length - 1; k++) {
      const m = /^(.*)\.(\d+)$/.exec(parts[k]);
      if (!m) continue;
      const key = [...parts.slice(0, k), `${m[1]}.#`].join('/');
      let byIdx = fam.get(key);
      if (!byIdx) fam.set(key, (byIdx = new Map()));
      const i = Number(m[2]);
      byIdx.set(i, [...(byIdx.get(i) ?? []), n]);
    }
  }
  const out: BlockFamily[] = [];
  for (const [pattern, byIdx] of fam) {
    const n = byIdx.size;
    if (n < 2 || ![...Array(n).keys()].every((i) => byIdx.has(i))) continue;
    const outputs: string[] = [];
    for (let i = 0; i < n; i++) {
      const inside = new Set(byIdx.get(i)!.flatMap((x) => x.outputs));
      const readOutside = new Set<string>();
      for (const x of ir.nodes) if (!byIdx.get(i)!.includes(x)) for (const v of x.inputs) if (inside.has(v) && isTensor(v)) readOutside.add(v);
      for (const o of ir.outputs) if (inside.has(o)) readOutside.add(o);
      if (readOutside.size !== 1) break;
      outputs.push([...readOutside][0]);
    }
    if (outputs.length === n) out.push({ pattern, outputs });
  }
  return out.sort((a, b) => b.outputs.length - a.outputs.length || a.pattern.localeCompare(b.pattern));
}

/** Shapes of the graph's values at batch 1 (tensors only), and the names of its tensors, from one build. */
export function probeShapes(ir: ImportedGraph): Map<string, readonly number[]> {
  const cx = buildProbe(ir, 1, ir.outputs);
  const out = new Map<string, readonly number[]>();
  for (const [k, v] of cx.env) if ('t' in v && !cx.weights.has(k)) out.set(k, v.t.shape);
  return out;
}

/**
 * Exit sites from `--exits auto` (the largest repeated-block family's outputs) or a list of tensor names; each
 * must be a float tensor of rank 2, 3 or 4 with the same feature width.
 */
export function chooseExits(ir: ImportedGraph, spec: 'auto' | readonly string[], shapes: Map<string, readonly number[]>): { exits: ExitSite[]; dim: number } {
  let names: string[];
  if (spec === 'auto') {
    const fams = blockFamilies(ir, (v) => shapes.has(v));
    if (fams.length === 0) throw new OnnxImportError('structure', '--exits auto found no repeated blocks in the node names (module paths like /blocks.0/...); name the exit tensors with --exits <tensor,...> (see import-model --list)');
    names = fams[0].outputs;
  } else names = [...spec];
  if (names.length === 0) throw new OnnxImportError('structure', 'no exits: pass --exits auto or --exits <tensor,...>');
  const exits = names.map((t) => {
    const s = shapes.get(t);
    if (!s) throw new OnnxImportError('structure', `exit tensor '${t}' is not a tensor of the graph (see import-model --list)`);
    if (s.length < 2 || s.length > 4) throw new OnnxImportError('structure', `exit tensor '${t}' has shape [${s.join(',')}]; exits read [B, n, d] (token 0), [B, C, H, W] (spatial mean) or [B, d]`);
    return { tensor: t, shape: s.slice(1) };
  });
  const widths = exits.map((e) => (e.shape.length === 2 ? e.shape[1] : e.shape[0]));
  if (widths.some((w) => w !== widths[0])) throw new OnnxImportError('structure', `exit tensors have different feature widths (${widths.join(', ')}); pick exits of one width (the prototype tables are [exits, classes, width])`);
  return { exits, dim: widths[0] };
}

/** Check that each exit tensor is a block boundary: the stretch after exit i-1 reads nothing earlier but constants. */
export function checkSegments(ir: ImportedGraph, shapes: Map<string, readonly number[]>): void {
  for (let i = 1; i < ir.exits.length; i++) checkBoundary(ir, shapes, ir.exits[i - 1].tensor, ir.exits[i].tensor, `exit ${i - 1}`, `exit ${i}`);
  const last = ir.exits[ir.exits.length - 1];
  if (last?.kept) checkBoundary(ir, shapes, last.tensor, last.kept.logits, `exit ${ir.exits.length - 1}`, `the kept classifier's output`);
}

function checkBoundary(ir: ImportedGraph, shapes: Map<string, readonly number[]>, from: string, to: string, fromWhat: string, toWhat: string): void {
  const order = new Map<string, number>();
  ir.nodes.forEach((n, i) => n.outputs.forEach((o) => order.set(o, i)));
  if ((order.get(to) ?? -1) <= (order.get(from) ?? -1)) throw new OnnxImportError('structure', `${toWhat} (${to}) comes before ${fromWhat} (${from}) in the graph; list exits in graph order`);
  const tensorsOnly = new Set([from, ...[...order.keys()].filter((k) => !shapes.has(k))]);
  const seg = nodesFor(ir, [to], tensorsOnly);
  const made = new Set(seg.flatMap((n) => n.outputs));
  for (const n of seg) {
    for (const v of n.inputs) {
      if (!v || made.has(v) || v === from || !shapes.has(v)) continue;
      throw new OnnxImportError('structure', `${fromWhat} (${from}) is not a block boundary: node '${n.name}' after it also reads '${v}' from before it; choose exit tensors that every later node depends on alone (block outputs), with --exits`);
    }
  }
}

/**
 * `--keep-head`: the model's own classifier (the Linear, Gemm or MatMul + Add with a constant weight, that computes
 * the graph's last output) becomes the last exit's head, so that exit starts from the pretrained predictions.
 * @throws OnnxImportError when the output is not a Linear's, is not [B, classes] with `classes` classes, or its
 * input is not [B, dim] with the other exits' width.
 */
export function keepHead(ir: ImportedGraph, shapes: Map<string, readonly number[]>, classes: number): NonNullable<ExitSite['kept']> {
  const logits = ir.outputs[ir.outputs.length - 1];
  const producer = (v: string): IrNode | undefined => ir.nodes.find((n) => n.outputs.includes(v));
  const weights = new Set(ir.weights.map((w) => w.onnx));
  const linear = (n: IrNode | undefined): n is IrNode => !!n && (n.op === 'Gemm' || n.op === 'MatMul') && weights.has(n.inputs[1]) && !(n.op === 'Gemm' && n.attrs.transA === 1);
  let cls = producer(logits);
  if (cls?.op === 'Add') cls = cls.inputs.map(producer).find(linear);
  if (!linear(cls)) {
    const p = producer(logits);
    throw new OnnxImportError('structure', `--keep-head: the model's output '${logits}' is not computed by a Linear layer (Gemm, or MatMul + Add, with a constant weight) but by ${p ? `${p.op} '${p.name}'` : 'no node'}; drop --keep-head (fresh heads are attached to every exit)`);
  }
  const out = shapes.get(logits);
  const features = cls.inputs[0];
  const fin = shapes.get(features);
  if (!out || out.length !== 2) throw new OnnxImportError('structure', `--keep-head: the model's output '${logits}' has shape [${out?.join(',')}], not [B, classes]`);
  if (out[1] !== classes) throw new OnnxImportError('structure', `--keep-head: the model's classifier '${cls.name}' has ${out[1]} classes but the backbone is imported with ${classes} labels; pass --classes ${out[1]} (or --labels with ${out[1]} names), or drop --keep-head`);
  const dim = ir.exits[0].shape.length === 2 ? ir.exits[0].shape[1] : ir.exits[0].shape[0];
  if (!fin || fin.length !== 2 || fin[1] !== dim) throw new OnnxImportError('structure', `--keep-head: the classifier '${cls.name}' reads [${fin?.join(',')}], but the exits have width ${dim}; choose exits of width ${fin?.[1]} with --exits, or drop --keep-head`);
  return { logits, features, classes };
}
