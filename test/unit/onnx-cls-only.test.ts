/**
 * The CLS-only last block of an imported ViT (src/model/onnx/cls-only-last-block.ts): it fires on the fixture ViTs
 * (fused, unbind and separate q/k/v), the last block then runs by rows with keys and values whole, and the forward
 * and the LoRA and image gradients equal the graph built without it; it does not fire where the last exit tensor's
 * rows mix (a token-mixing MatMul) or a kept classifier reads the last exit tensor.
 */
import test from 'ava';
import { tinyVitOnnx } from '../../scripts/reference/onnx-fixtures.ts';
import * as G from '../../src/graph/index.ts';
import { prepareImport } from '../../src/model/onnx/import.ts';
import { clsOnlyPlanOf, importedConfig, registerImportedGraph } from '../../src/model/onnx/architecture.ts';
import { architectureOf } from '../../src/model/architecture.ts';
import { LAYERNORM_LINEAR_OP, fusedMatMuls } from '../../src/model/onnx/fuse-layernorm-linear.ts';
import type { ImportedGraph } from '../../src/model/onnx/ir.ts';
import type { Weights } from '../../src/model/vit.ts';
import { Session } from '../../src/runtime/index.ts';
import { Rng } from '../../src/util/rng.ts';
import { importedLossAndGrads, worstRel } from '../imported-grads.ts';

const LORA = { rank: 2, alpha: 4, targets: ['q'] as ['q'] };
const BATCH = 3;

/** Token-0 loss and gradients with the training forward's CLS-only last block (`clsOnly`) or without it. */
const lossAndGrads = (ir: ImportedGraph, weights: Weights, clsOnly: boolean, blocks?: number): Promise<Record<string, Float32Array>> =>
  importedLossAndGrads(ir, weights, { batch: BATCH, seed: 4, clsOnly, blocks, tokenZero: true });

test('the CLS-only last block fires on the fixture ViTs (fused, unbind, separate q/k/v); forward and LoRA gradients equal the full build to 1e-5', async (t) => {
  for (const qkv of ['separate', 'fused', 'unbind'] as const) {
    const { ir, weights } = prepareImport(tinyVitOnnx({ qkv, seed: 5 }), { loraTargets: qkv === 'separate' ? 'attn/(q|v)/|mlp/fc' : 'attn/qkv/|mlp/fc' });
    const plan = clsOnlyPlanOf(ir, BATCH, ir.exits.length);
    t.truthy(plan, `${qkv}: the rewrite fires`);
    // The row slice of the last block's input, and the LayerNorm-Linears: q alone by rows, k and v whole (separate).
    t.true(plan!.nodes.some((n) => n.op === 'Slice' && n.inputs[0] === ir.exits[ir.exits.length - 2].tensor), qkv);
    if (qkv === 'separate') {
      const norm1 = plan!.nodes.filter((n) => n.op === LAYERNORM_LINEAR_OP && n.name.includes('blocks.2/norm1'));
      t.deepEqual(norm1.map((n) => fusedMatMuls(n).map((m) => m.split('/').at(-2))), [['q'], ['k', 'v']]);
    }
    t.true(plan!.rowNodes >= 8, `${qkv}: ${plan!.rowNodes} nodes by rows`);
    // Earlier segments untouched: the rewrite only replaces nodes of the last segment.
    t.is(clsOnlyPlanOf(ir, BATCH, 1)?.target, ir.exits[0].tensor);
    const [a, b] = [await lossAndGrads(ir, weights, true), await lossAndGrads(ir, weights, false)];
    t.is(a['grad:images'].length, b['grad:images'].length);
    t.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
    t.true(Object.keys(a).filter((k) => k.endsWith('lora_a') || k.endsWith('lora_b')).length >= 8, qkv);
    // Forward (loss, token 0 of the last exit) to 1e-5; gradients to 1e-5 too here, 1e-4 at depth 1 (float32 sums
    // over one row instead of all rows of zero-gradient tokens round differently).
    const fwd = (r: Record<string, Float32Array>) => ({ loss: r.loss, last: r.last });
    const same = worstRel(a, b);
    t.true(same.rel <= 1e-5, `${qkv} ${same.key}: max |cls-only - full| / max |full| ${same.rel}`);
    // One block only (anytime depth 1): the last segment starts at the images, so the embedding feeds q by rows and k, v whole.
    const [a1, b1] = [await lossAndGrads(ir, weights, true, 1), await lossAndGrads(ir, weights, false, 1)];
    t.true(worstRel(fwd(a1), fwd(b1)).rel <= 1e-5, `${qkv} blocks 1 forward`);
    const one = worstRel(a1, b1);
    t.true(one.rel <= 1e-4, `${qkv} blocks 1 ${one.key}: ${one.rel}`);
    // The architecture's forward (what training builds) uses it: the last exit's logits equal the full build's.
    const cfg = importedConfig(ir, 10);
    registerImportedGraph(ir);
    const off = { ...ir, clsOnly: false };
    registerImportedGraph(off);
    const logits = async (graph: ImportedGraph): Promise<Float32Array> => {
      const g = new G.Graph();
      const c = { ...cfg, arch: importedConfig(graph, 10).arch };
      const heads = new Rng(2);
      const param = (name: string): G.Tensor => {
        const s = graph.weights.find((w) => w.name === name);
        if (s) return g.initializer(name, weights.get(name)!, s.shape);
        const shape = name.endsWith('head.weight') ? [ir.dim, 10] : name.endsWith('head.bias') ? [10] : [ir.dim];
        return g.initializer(name, Float32Array.from({ length: shape.reduce((p, q) => p * q, 1) }, () => heads.uniform(-1, 1)), shape);
      };
      const out = architectureOf(c).forward(c, g.input('images', [BATCH, 1, 28, 28]), param, {});
      g.output(out.logits[out.logits.length - 1], 'y');
      const s = await Session.create(G.exportOnnx(g), { threads: 1 });
      try {
        const rng = new Rng(9);
        return (await s.run({ images: { data: Float32Array.from({ length: BATCH * 784 }, () => rng.uniform(-1, 1)), dims: [BATCH, 1, 28, 28] } })).y as Float32Array;
      } finally {
        await s.release();
      }
    };
    const [ya, yb] = [await logits(ir), await logits(off)];
    t.true(Math.max(...Array.from(ya, (v, i) => Math.abs(v - yb[i]))) <= 1e-5, qkv);
    t.is(clsOnlyPlanOf(off, BATCH, ir.exits.length), null, 'clsOnly: false turns it off');
  }
});

test('the CLS-only last block does not fire where the last exit tensor mixes tokens or a kept classifier reads it', async (t) => {
  const { ir, weights } = prepareImport(tinyVitOnnx({ qkv: 'separate', seed: 5 }), { loraTargets: 'attn/(q|v)/' });
  // A token-mixing map at the end of the last block: last' = M · last with M [n, n] a constant, so row 0 reads all rows.
  const last = ir.exits[ir.exits.length - 1].tensor;
  const n = ir.exits[ir.exits.length - 1].shape[0];
  const mixed = `${last}::mixed`;
  const rng = new Rng(3);
  const mixIr: ImportedGraph = {
    ...ir,
    nodes: [...ir.nodes, { op: 'MatMul', name: '/mix/MatMul', inputs: ['mix', last], outputs: [mixed], attrs: {} }],
    consts: { ...ir.consts, mix: { dtype: 'float32', shape: [n, n], data: Array.from({ length: n * n }, () => rng.uniform(-0.2, 0.2)) } },
    exits: [...ir.exits.slice(0, -1), { ...ir.exits[ir.exits.length - 1], tensor: mixed }],
  };
  t.is(clsOnlyPlanOf(mixIr, BATCH, mixIr.exits.length), null);
  const [a, b] = [await lossAndGrads(mixIr, weights, true), await lossAndGrads(mixIr, weights, false)];
  t.is(worstRel(a, b).rel, 0);
  // A kept classifier on the last exit reads the whole tensor through the model's graph: not rewritten.
  // (the fixture's output is an Identity of the head, which --keep-head refuses; the exit is marked kept directly)
  const keptIr: ImportedGraph = { ...ir, exits: [...ir.exits.slice(0, -1), { ...ir.exits[ir.exits.length - 1], kept: { logits: ir.outputs[0], features: ir.outputs[0], classes: 10 } }] };
  t.is(clsOnlyPlanOf(keptIr, BATCH, keptIr.exits.length), null);
  t.truthy(clsOnlyPlanOf(keptIr, BATCH, keptIr.exits.length - 1), 'an earlier exit with a fresh head still takes it');
});
