/**
 * What the importer's rewrite tests share (test/unit/onnx-fuse.test.ts, onnx-cls-only.test.ts): an imported graph's
 * loss (a fixed random projection of its exit tensors) and its gradients wrt the images and every LoRA factor, run by
 * onnxruntime, and the relative distance between two such runs.
 */
import * as G from '../src/graph/index.ts';
import { runToExits } from '../src/model/onnx/architecture.ts';
import type { ImportedGraph } from '../src/model/onnx/ir.ts';
import type { Weights } from '../src/model/vit.ts';
import { Session } from '../src/runtime/index.ts';
import { Rng } from '../src/util/rng.ts';

const LORA = { rank: 2, alpha: 4, targets: ['q'] as ['q'] };

export interface GradRun {
  batch: number;
  /** Seed of the loss projection. */
  seed: number;
  /** Blocks to run (default: every exit). */
  blocks?: number;
  /** Build the last block for the CLS row only (cls-only-last-block.ts). */
  clsOnly?: boolean;
  /**
   * Project only each exit's token 0, and also output token 0 of the last exit tensor as `last`, [B, d] (whichever way
   * the last block was built); otherwise the whole exit tensors are projected.
   */
  tokenZero?: boolean;
}

/** Outputs `loss`, `grad:images`, `grad:<lora factor>` (and `last` with `tokenZero`). */
export async function importedLossAndGrads(ir: ImportedGraph, weights: Weights, r: GradRun): Promise<Record<string, Float32Array>> {
  const g = new G.Graph();
  const rng = new Rng(r.seed);
  const images = g.input('images', [r.batch, ir.input.channels, ir.input.size, ir.input.size]);
  const shapes = new Map(ir.weights.map((w) => [w.name, w.shape]));
  const made = new Map<string, G.Tensor>();
  const lora: G.Tensor[] = [];
  const param = (name: string): G.Tensor => {
    let x = made.get(name);
    if (x) return x;
    const site = ir.lora.find((s) => name === `${s.prefix}.lora_a` || name === `${s.prefix}.lora_b`);
    if (site) {
      x = g.input(name, name.endsWith('lora_a') ? [site.in, LORA.rank] : [LORA.rank, site.out]);
      lora.push(x);
    } else x = g.initializer(name, weights.get(name)!, shapes.get(name)!);
    made.set(name, x);
    return x;
  };
  const exits = runToExits(ir, images, param, { lora: LORA }, r.blocks ?? ir.exits.length, r.clsOnly ?? false);
  let loss: G.Tensor | null = null;
  exits.forEach((e, i) => {
    const tok = !r.tokenZero || e.shape[1] === 1 ? e : G.slice(e, [0], [1], [1]);
    const shape = r.tokenZero ? [1, ...tok.shape.slice(1)] : tok.shape;
    const w = g.initializer(`proj${i}`, Float32Array.from({ length: r.tokenZero ? tok.size / r.batch : tok.size }, () => rng.uniform(-1, 1)), shape);
    const term = G.sumAll(G.mul(tok, w));
    loss = loss ? G.add(loss, term) : term;
  });
  const grads = G.grad(loss!, [images, ...lora]);
  g.output(loss!, 'loss');
  if (r.tokenZero) g.output(exits[exits.length - 1], 'last');
  grads.forEach((d, i) => g.output(d, `grad:${i === 0 ? 'images' : lora[i - 1].name}`));
  const s = await Session.create(G.exportOnnx(g), { threads: 1 });
  try {
    const feedRng = new Rng(11);
    const feeds: Record<string, { data: Float32Array; dims: number[] }> = {};
    for (const t of [images, ...lora]) feeds[t.name] = { data: Float32Array.from({ length: t.size }, () => feedRng.uniform(-0.5, 0.5)), dims: [...t.shape] };
    const out = (await s.run(feeds)) as Record<string, Float32Array>;
    if (r.tokenZero) {
      const last = exits[exits.length - 1];
      const d = last.shape[2];
      out.last = Float32Array.from({ length: r.batch * d }, (_, k) => out.last[Math.floor(k / d) * last.shape[1] * d + (k % d)]);
    }
    return out;
  } finally {
    await s.release();
  }
}

/** Max over the outputs of max |a - b| / max |b|, and the worst one. */
export function worstRel(a: Record<string, Float32Array>, b: Record<string, Float32Array>): { rel: number; key: string } {
  let worst = { rel: 0, key: '' };
  for (const k of Object.keys(b)) {
    const scale = Math.max(1e-6, ...Array.from(b[k], Math.abs));
    const rel = Math.max(...Array.from(b[k], (v, i) => Math.abs(v - a[k][i]))) / scale;
    if (!(rel <= worst.rel)) worst = { rel, key: k };
  }
  return worst;
}
