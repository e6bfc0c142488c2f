/**
 * Check an import of a PyTorch export against the reference values export_models.py wrote (outputs of the model,
 * LoRA / exit-head values, loss and autograd gradients on one batch). Used by compare-import.ts (the README table)
 * and by test/unit/onnx-torch.test.ts (the committed fixture).
 */
import { forwardWith, prepareImport } from '../../src/model/onnx/import.ts';
import { importedConfig, registerImportedGraph } from '../../src/model/onnx/architecture.ts';
import { trainableTensors } from '../../src/model/architecture.ts';
import { buildTrainGraph, gradName, IMAGES, LABELS } from '../../src/model/graphs.ts';
import type { LoraConfig, VitConfig, Weights } from '../../src/model/vit.ts';
import type { ImportedGraph } from '../../src/model/onnx/ir.ts';
import { Session } from '../../src/runtime/index.ts';

/** What export_models.py writes per architecture. */
export interface TorchReference {
  model: string;
  torch: string;
  opset: number;
  input: number[];
  images: number[];
  labels: number[];
  outputs: Record<string, number[]>;
  loraTargets: string;
  exits: 'auto' | string[];
  keepHead: boolean;
  lora: { rank: number; alpha: number };
  loss: number;
  params: Record<string, { shape: number[]; value: number[] }>;
  grads: Record<string, number[]>;
}

export interface TorchComparison {
  model: string;
  nodes: number;
  foldedNodes: number;
  loraSites: number;
  exits: number;
  /** Max |fmfl imported forward − onnxruntime(original file)| over all outputs, on the reference batch. */
  forwardVsOrt: number;
  /** Max |fmfl imported forward − PyTorch| on the reference batch. */
  forwardVsTorch: number;
  loss: number;
  torchLoss: number;
  /** Largest over trainable tensors of max |fmfl − torch| / max |torch|. */
  maxRelGradDiff: number;
  worstGrad: string;
  trainable: number;
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

/** The imported graph, its config and LoRA config for a reference, with the trainable tensors checked against it. */
export function importReference(ref: TorchReference, onnx: Uint8Array): { ir: ImportedGraph; weights: Weights; foldedNodes: number; cfg: VitConfig; lora: LoraConfig } {
  const p = prepareImport(onnx, { loraTargets: ref.loraTargets, exits: ref.exits, keepHead: ref.keepHead });
  registerImportedGraph(p.ir);
  const cfg = importedConfig(p.ir, 10);
  const lora: LoraConfig = { rank: ref.lora.rank, alpha: ref.lora.alpha, targets: ['q'] };
  const mine = trainableTensors(cfg, 'lora+heads', lora).map((s) => s.name).sort();
  const theirs = Object.keys(ref.params).sort();
  if (JSON.stringify(mine) !== JSON.stringify(theirs)) throw new Error(`trainable tensors differ: fmfl [${mine.join(', ')}], torch [${theirs.join(', ')}]`);
  return { ...p, cfg, lora };
}

/** fmfl's training graph on the reference batch with the reference's LoRA / head values: loss and gradients. */
export async function fmflGradients(ref: TorchReference, cfg: VitConfig, lora: LoraConfig, weights: Weights): Promise<{ loss: number; grads: Map<string, Float32Array> }> {
  const trainable = trainableTensors(cfg, 'lora+heads', lora);
  const batch = ref.input[0];
  const built = buildTrainGraph({ cfg, lora, trainable, frozen: weights, batch });
  const s = await Session.create(built.onnx, { threads: 1 });
  try {
    const feeds: Parameters<Session['run']>[0] = {
      [IMAGES]: { data: Float32Array.from(ref.images), dims: ref.input },
      [LABELS]: { data: BigInt64Array.from(ref.labels.map(BigInt)), dims: [batch] },
    };
    for (const t of trainable) feeds[t.name] = { data: Float32Array.from(ref.params[t.name].value), dims: t.shape };
    const out = await s.run(feeds);
    const grads = new Map(trainable.map((t) => [t.name, out[gradName(t.name)] as Float32Array]));
    return { loss: (out.loss as Float32Array)[0], grads };
  } finally {
    await s.release();
  }
}

/** Import, then compare forward (vs onnxruntime and torch) and gradients (vs torch autograd). */
export async function compareWithTorch(ref: TorchReference, onnx: Uint8Array): Promise<TorchComparison> {
  const { ir, weights, foldedNodes, cfg, lora } = importReference(ref, onnx);
  const images = Float32Array.from(ref.images);
  const mine = await forwardWith(ir, weights, images, ref.input[0]);
  const ort = await Session.create(onnx, { threads: 1 });
  let forwardVsOrt = 0;
  let forwardVsTorch = 0;
  try {
    const out = await ort.run({ [ir.input.name]: { data: images, dims: ref.input } });
    ir.outputs.forEach((name, i) => {
      forwardVsOrt = Math.max(forwardVsOrt, maxAbs(mine[i], out[name] as Float32Array));
      forwardVsTorch = Math.max(forwardVsTorch, maxAbs(mine[i], ref.outputs[name]));
    });
  } finally {
    await ort.release();
  }
  const { loss, grads } = await fmflGradients(ref, cfg, lora, weights);
  let maxRelGradDiff = 0;
  let worstGrad = '';
  for (const [name, g] of grads) {
    const t = ref.grads[name];
    const scale = t.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const rel = maxAbs(g, t) / (scale || 1);
    if (rel >= maxRelGradDiff) {
      maxRelGradDiff = rel;
      worstGrad = name;
    }
  }
  return {
    model: ref.model, nodes: ir.nodes.length, foldedNodes, loraSites: ir.lora.length, exits: ir.exits.length,
    forwardVsOrt, forwardVsTorch, loss, torchLoss: ref.loss, maxRelGradDiff, worstGrad, trainable: grads.size,
  };
}
