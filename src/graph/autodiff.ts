import { GradientError, GraphError, type GraphNode, type Tensor } from './graph.ts';
import { add, addPadded, getOp, zerosLike } from './ops/index.ts';

/**
 * Reverse-mode differentiation: appends to `loss`'s graph the nodes computing d loss / d w for each `w` in
 * `wrt`, and returns them in order (same shapes as `wrt`). Only nodes on a path from some `w` to `loss` are
 * differentiated, so frozen layers below the first trainable tensor cost nothing and frozen weights get no
 * weight gradient. A `w` that `loss` does not depend on gets a zero gradient.
 *
 * Throws GradientError naming the op when a needed gradient passes through an op without a VJP.
 */
export function grad(loss: Tensor, wrt: readonly Tensor[]): Tensor[] {
  const graph = loss.graph;
  if (loss.size !== 1) throw new GraphError('grad', `loss must be a scalar, got shape [${loss.shape.join(',')}]`);
  if (!loss.dtype.startsWith('float')) throw new GraphError('grad', 'loss must be a float tensor');
  for (const w of wrt) {
    if (w.graph !== graph) throw new GraphError('grad', `tensor ${w.name} belongs to another graph`);
  }
  // Snapshot: VJPs append nodes while we walk.
  const nodes = graph.nodes.slice();

  // Forward: which tensors depend on a wrt tensor.
  const requires = new Set<number>(wrt.map((w) => w.id));
  for (const n of nodes) {
    if (n.inputs.some((t) => requires.has(t.id))) for (const o of n.outputs) requires.add(o.id);
  }
  // Backward: which tensors the loss depends on.
  const contributes = new Set<number>([loss.id]);
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    if (n.outputs.some((o) => contributes.has(o.id))) for (const t of n.inputs) contributes.add(t.id);
  }

  const grads = new Map<number, Tensor>();
  grads.set(loss.id, graph.constant([1], loss.shape, loss.dtype));
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    const gradOuts = n.outputs.map((o) => grads.get(o.id) ?? null);
    if (gradOuts.every((g) => g === null)) continue;
    const needs = n.inputs.map((t) => requires.has(t.id) && contributes.has(t.id) && t.dtype.startsWith('float'));
    if (!needs.some(Boolean)) continue;
    const ins = vjpOf(n, gradOuts, needs);
    n.inputs.forEach((t, k) => {
      const gi = ins[k];
      if (!needs[k] || gi === null || gi === undefined) return;
      if (gi.shape.length !== t.shape.length || gi.shape.some((d, j) => d !== t.shape[j])) {
        throw new GraphError(n.op, `VJP produced shape [${gi.shape.join(',')}] for input [${t.shape.join(',')}]`);
      }
      const prev = grads.get(t.id);
      grads.set(t.id, prev ? accumulate(prev, gi) : gi);
    });
  }
  return wrt.map((w) => grads.get(w.id) ?? zerosLike(w));
}

/**
 * prev + gi. A zero-padded contribution (a Slice's gradient, emitted as Pad) is added into the other one's block
 * in place (AddPadded: ScatterND add) instead of being materialized at full size and added.
 */
function accumulate(a: Tensor, b: Tensor): Tensor {
  const padded = (t: Tensor): boolean => t.node?.op === 'Pad' && t.node.inputs.length === 1;
  if (padded(b) && !padded(a)) return addPadded(a, b.node!.inputs[0], b.node!.attrs.before as number[]);
  if (padded(a) && !padded(b)) return addPadded(b, a.node!.inputs[0], a.node!.attrs.before as number[]);
  return add(a, b);
}

function vjpOf(n: GraphNode, gradOuts: (Tensor | null)[], needs: boolean[]): (Tensor | null)[] {
  const op = getOp(n.op);
  if (!op.vjp) throw new GradientError(n.op, 'the op declares no VJP');
  // A VJP may assume the gradient of output 0 exists when the op has one output.
  if (n.outputs.length === 1 && gradOuts[0] === null) return n.inputs.map(() => null);
  return op.vjp(n, gradOuts, needs);
}
