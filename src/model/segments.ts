/**
 * Per-block segment graphs of the ViT for progressive ("anytime") inference. Segment i maps the hidden state
 * after block i-1 (segment 0: the images) to the hidden state after block i plus exit i's logits and embedding.
 * Running segments 0..k in order computes exactly what {@link buildInferGraph} computes for exits 0..k, in one
 * pass: the hidden state travels between segments through JS, and a caller can stop between any two of them.
 *
 * Built from the same pieces as the architecture's forward pass (its embed, block and exit). Frozen tensors are initializers;
 * trainable tensors stay graph inputs (only those a segment uses), so new global weights need no rebuild.
 */
import * as G from '../graph/index.ts';
import type { Tensor } from '../graph/index.ts';
import { ConfigError } from '../util/errors.ts';
import { embeddingName, logitsName, modelSpecs, IMAGES, type GraphSpec } from './graphs.ts';
import { architectureOf } from './architecture.ts';

/** Input name of the hidden state (segments 1..depth-1). */
export const HIDDEN = 'hidden';
/** Output name of the next hidden state (every segment but the last). */
export const HIDDEN_NEXT = 'hidden_next';

/** One segment graph. */
export interface SegmentGraph {
  /** Block (and exit) index of this segment. */
  index: number;
  onnx: Uint8Array;
  /** Input name: `images` for segment 0, `hidden` otherwise. */
  input: string;
  /** Trainable tensors this segment takes as inputs, in input order. */
  params: string[];
  /** Whether it outputs `hidden_next` (every segment but the last). */
  hasHidden: boolean;
  /** Output names of its exit. */
  logits: string;
  embedding: string;
}

/** Options of {@link buildSegmentGraphs}: the inference graph's spec, optionally limited to `blocks` segments. */
export interface SegmentsSpec extends GraphSpec {
  /** Number of segments (blocks) to build; default all. */
  blocks?: number;
}

/** The hidden-state shape passed into segment `after + 1` (the ViT's [B, patches + 1, dim] after every block). */
export function hiddenShape(spec: Pick<GraphSpec, 'cfg' | 'batch'>, after = 0): number[] {
  return architectureOf(spec.cfg).hiddenShape(spec.cfg, spec.batch, after);
}

/** Build segment graphs 0..blocks-1 (see the module comment). */
export function buildSegmentGraphs(spec: SegmentsSpec): SegmentGraph[] {
  const blocks = spec.blocks ?? spec.cfg.depth;
  if (!Number.isInteger(blocks) || blocks < 1 || blocks > spec.cfg.depth) throw new ConfigError(`blocks must be in 1..${spec.cfg.depth}`);
  if (!Number.isInteger(spec.batch) || spec.batch < 1) throw new ConfigError('batch must be a positive integer');
  const trainable = new Map(spec.trainable.map((s) => [s.name, s]));
  const shapes = new Map(modelSpecs(spec.cfg, spec.lora).map((s) => [s.name, s.shape]));
  const fwd = { lora: spec.lora, fusedGelu: spec.fusedGelu };
  const out: SegmentGraph[] = [];
  for (let i = 0; i < blocks; i++) {
    const g = new G.Graph();
    const made = new Map<string, Tensor>();
    const params: string[] = [];
    const param = (name: string): Tensor => {
      let t = made.get(name);
      if (t) return t;
      const ts = trainable.get(name);
      if (ts) {
        t = g.input(name, ts.shape);
        params.push(name);
      } else {
        const data = spec.frozen.get(name);
        const shape = shapes.get(name);
        if (!data || !shape) throw new ConfigError(`segment ${i} needs tensor ${name}, which is neither trainable nor in the frozen weights`);
        t = g.initializer(name, data, shape);
      }
      made.set(name, t);
      return t;
    };
    const c = spec.cfg;
    const arch = architectureOf(c);
    const x0 = i === 0 ? arch.embed(c, g.input(IMAGES, [spec.batch, c.channels, c.image, c.image]), param, fwd) : g.input(HIDDEN, hiddenShape(spec, i - 1));
    const hasHidden = i < c.depth - 1;
    const x = arch.block(c, x0, i, param, fwd, !hasHidden);
    const e = arch.exit(c, x, i, param, fwd);
    if (hasHidden) g.output(x, HIDDEN_NEXT);
    g.output(e.logits, logitsName(i));
    g.output(e.embedding, embeddingName(i));
    out.push({ index: i, onnx: G.exportOnnx(g, { name: `fmfl-vit-segment-${i}` }), input: i === 0 ? IMAGES : HIDDEN, params, hasHidden, logits: logitsName(i), embedding: embeddingName(i) });
  }
  return out;
}
