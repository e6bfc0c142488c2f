import * as ort from 'onnxruntime-node';
import { loadBackbone } from '../src/model/backbone.ts';
import { buildTrainGraph, buildInferGraph, IMAGES, LABELS } from '../src/model/graphs.ts';
import { VIT_TINY, DEFAULT_LORA, trainableSpecs, initWeights } from '../src/model/vit.ts';
const cfg = VIT_TINY;
const bb = await loadBackbone();
const specs = trainableSpecs(cfg, 'lora+heads', DEFAULT_LORA);
const frozen = new Map([...bb.weights].filter(([k]) => !specs.some((s) => s.name === k)));
const lw = initWeights(specs, 3);
const batch = 64;
const fused = process.env.FUSED === '1';
const opts: any = { intraOpNumThreads: Number(process.env.INTRA ?? 2), interOpNumThreads: Number(process.env.INTER ?? 1), executionMode: process.env.EXEC ?? 'sequential', graphOptimizationLevel: 'all' };
async function mk(train: boolean) {
  const g = train ? buildTrainGraph({ cfg, lora: DEFAULT_LORA, trainable: specs, frozen, batch, fusedGelu: fused }) : buildInferGraph({ cfg, lora: DEFAULT_LORA, trainable: specs, frozen, batch, fusedGelu: fused });
  const s = await ort.InferenceSession.create(g.onnx, opts);
  const feeds: Record<string, ort.Tensor> = {};
  for (const sp of specs) feeds[sp.name] = new ort.Tensor('float32', Float32Array.from(lw.get(sp.name)!), sp.shape);
  feeds[IMAGES] = new ort.Tensor('float32', new Float32Array(batch * 784).map((_, i) => Math.sin(i)), [batch, 1, 28, 28]);
  if (train) feeds[LABELS] = new ort.Tensor('int64', BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 10)), [batch]);
  return { s, feeds };
}
const f = await mk(false), t = await mk(true);
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
async function time(x: { s: ort.InferenceSession; feeds: any }, n: number) { for (let i = 0; i < 5; i++) await x.s.run(x.feeds); const ts = []; for (let i = 0; i < n; i++) { const a = performance.now(); await x.s.run(x.feeds); ts.push(performance.now() - a); } return med(ts); }
const rf: number[] = [], rt: number[] = [];
for (let k = 0; k < 3; k++) { rf.push(await time(f, 40)); rt.push(await time(t, 40)); }
const F = med(rf), T = med(rt);
console.log(JSON.stringify({ opts, fused, fwd: +F.toFixed(2), train: +T.toFixed(2), ratio: +(T / F).toFixed(3) }));
