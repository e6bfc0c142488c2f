/**
 * Folding an inference-mode BatchNormalization into the Conv before it, at import: with k = scale / √(var + ε) per
 * output channel, BN(Conv(x; W, b)) = Conv(x; W·k, (b − mean)·k + B) exactly (up to float rounding), so the
 * training step runs one Conv (forward and VJP) instead of a Conv and a BatchNorm's four broadcast ops each way.
 * PyTorch's eval-mode export keeps the BatchNorm when constant folding is off or training=TrainingMode.PRESERVE.
 *
 * Only where nothing else can see the difference: the Conv's weight (and bias) and the BN's five inputs are weights
 * (initializers) that no other node reads, the Conv's output is read by the BN alone and is no graph output, and the
 * BN is in inference mode with only its first output used. The folded weight and bias are frozen backbone tensors
 * like the originals (LoRA sits on MatMul/Gemm, never on a Conv); under the `all` trainable set they train in place
 * of the Conv and BN parameters (the same functions, parametrised by the folded values). The Conv keeps its weight's
 * name; its bias is the BN's B tensor, rewritten. The import's forward check against onnxruntime's run of the
 * original file covers the fold, and test/unit/onnx-torch.test.ts compares forward and gradients with PyTorch's.
 */
import type { ConstValue, IrNode } from './ir.ts';

type WeightMap = Map<string, { shape: number[]; data: Float32Array }>;

/**
 * The nodes with each foldable Conv → BatchNormalization pair replaced by one Conv writing the BN's output, and the
 * weights with the folded values (a new map; `weights` is not changed).
 */
export function foldBatchNorm(nodes: readonly IrNode[], weights: ReadonlyMap<string, { shape: number[]; data: Float32Array }>, consts: ReadonlyMap<string, ConstValue>, outputs: readonly string[]): { nodes: IrNode[]; weights: WeightMap } {
  const out: WeightMap = new Map(weights);
  const readers = new Map<string, number>();
  const producer = new Map<string, IrNode>();
  for (const n of nodes) {
    for (const i of n.inputs) if (i) readers.set(i, (readers.get(i) ?? 0) + 1);
    for (const o of n.outputs) if (o) producer.set(o, n);
  }
  for (const o of outputs) readers.set(o, (readers.get(o) ?? 0) + 1);
  const own = (name: string | undefined): boolean => !!name && weights.has(name) && !producer.has(name) && !consts.has(name) && readers.get(name) === 1;
  const drop = new Set<IrNode>();
  const replace = new Map<IrNode, IrNode>();
  for (const bn of nodes) {
    if (bn.op !== 'BatchNormalization' || bn.inputs.length !== 5 || bn.outputs.slice(1).some(Boolean)) continue;
    if ((typeof bn.attrs.training_mode === 'number' ? bn.attrs.training_mode : 0) !== 0) continue;
    const conv = producer.get(bn.inputs[0]);
    if (!conv || conv.op !== 'Conv' || readers.get(bn.inputs[0]) !== 1 || replace.has(conv)) continue;
    const [, wName, cbName] = conv.inputs;
    if (!own(wName) || (cbName && !own(cbName)) || !bn.inputs.slice(1).every(own)) continue;
    const W = weights.get(wName)!;
    const C = W.shape[0];
    const [s, B, m, v] = bn.inputs.slice(1).map((nm) => weights.get(nm)!);
    const cb = cbName ? weights.get(cbName)! : null;
    if (W.shape.length < 3 || [s, B, m, v, ...(cb ? [cb] : [])].some((p) => p.shape.length !== 1 || p.shape[0] !== C)) continue;
    const eps = typeof bn.attrs.epsilon === 'number' ? bn.attrs.epsilon : 1e-5;
    const per = W.data.length / C;
    const w2 = new Float32Array(W.data.length);
    const b2 = new Float32Array(C);
    for (let c = 0; c < C; c++) {
      const k = s.data[c] / Math.sqrt(v.data[c] + eps);
      for (let i = c * per; i < (c + 1) * per; i++) w2[i] = W.data[i] * k;
      b2[c] = ((cb ? cb.data[c] : 0) - m.data[c]) * k + B.data[c];
    }
    out.set(wName, { shape: W.shape, data: w2 });
    out.set(bn.inputs[2], { shape: [C], data: b2 });
    for (const nm of [bn.inputs[1], bn.inputs[3], bn.inputs[4], ...(cbName ? [cbName] : [])]) out.delete(nm);
    replace.set(conv, { ...conv, inputs: [conv.inputs[0], wName, bn.inputs[2]], outputs: [bn.outputs[0]] });
    drop.add(bn);
  }
  return { nodes: nodes.filter((n) => !drop.has(n)).map((n) => replace.get(n) ?? n), weights: out };
}
