import * as ort from 'onnxruntime-node';
import { readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { loadBackbone } from '../src/model/backbone.ts';
import { buildTrainGraph, buildInferGraph, IMAGES, LABELS } from '../src/model/graphs.ts';
import { VIT_TINY, DEFAULT_LORA, trainableSpecs, initWeights } from '../src/model/vit.ts';
const cfg = VIT_TINY;
const bb = await loadBackbone();
const which = process.argv[2] ?? 'train';
const specs = trainableSpecs(cfg, 'lora+heads', DEFAULT_LORA);
const frozen = new Map([...bb.weights].filter(([k]) => !specs.some((s) => s.name === k)));
const lw = initWeights(specs, 3);
const batch = 64;
const g = which === "train" ? buildTrainGraph({ cfg, lora: DEFAULT_LORA, trainable: specs, frozen, batch, fusedGelu: true }) : buildInferGraph({ cfg, lora: DEFAULT_LORA, trainable: specs, frozen, batch });
const s = await ort.InferenceSession.create(g.onnx, { intraOpNumThreads: 2, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', enableProfiling: true, profileFilePrefix: '/tmp/ortprof_' + which, optimizedModelFilePath: '/tmp/opt_' + which + '.onnx' } as any);
const feeds: Record<string, ort.Tensor> = {};
for (const sp of specs) feeds[sp.name] = new ort.Tensor('float32', Float32Array.from(lw.get(sp.name)!), sp.shape);
feeds[IMAGES] = new ort.Tensor('float32', new Float32Array(batch * 784).map((_, i) => Math.sin(i)), [batch, 1, 28, 28]);
if (which === 'train') feeds[LABELS] = new ort.Tensor('int64', BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 10)), [batch]);
for (const n of s.inputNames) if (!feeds[n]) console.error('missing feed', n);
const N = 40;
for (let i = 0; i < N; i++) await s.run(feeds);
s.endProfiling();
const file = readdirSync('.').filter((f) => f.startsWith('ortprof_') || f.includes('ortprof')).map(f=>f)[0] ?? readdirSync('/tmp').filter((f) => f.startsWith('ortprof_' + which)).map((f) => '/tmp/' + f).sort().pop()!;
const ev = JSON.parse(readFileSync(file, 'utf8')) as any[];
const byType = new Map<string, { us: number; n: number }>();
let total = 0;
for (const e of ev) {
  if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
  const t = e.args?.op_name ?? '?';
  const r = byType.get(t) ?? { us: 0, n: 0 };
  r.us += e.dur; r.n++; byType.set(t, r); total += e.dur;
}
const rows = [...byType].sort((a, b) => b[1].us - a[1].us);
console.log(which, 'total kernel ms/run', (total / N / 1000).toFixed(2));
for (const [t, r] of rows) console.log(t.padEnd(28), (r.us / N / 1000).toFixed(3).padStart(8), 'ms', String(r.n / N).padStart(5), 'nodes');
// top nodes
const byNode = new Map<string, number>();
for (const e of ev) if (e.cat === 'Node' && e.name.endsWith('_kernel_time')) byNode.set(e.name + ' ' + e.args?.op_name + ' ' + JSON.stringify(e.args?.output_type_shape ?? ''), (byNode.get(e.name + ' ' + e.args?.op_name+ ' ' + JSON.stringify(e.args?.output_type_shape ?? '')) ?? 0) + e.dur);
console.log('--- top nodes');
const filt = process.argv[3]; for (const [n, us] of [...byNode].sort((a, b) => b[1] - a[1]).filter(([n]) => !filt || n.includes(filt)).slice(0, 60)) console.log((us / N / 1000).toFixed(3), n.slice(0, 200));
unlinkSync(file);
console.log('--- by type+shape');
const byTS = new Map<string, { us: number; n: number }>();
for (const e of ev) if (e.cat === 'Node' && e.name.endsWith('_kernel_time')) { const k = e.args?.op_name + ' ' + JSON.stringify(e.args?.output_type_shape ?? ''); const r = byTS.get(k) ?? { us: 0, n: 0 }; r.us += e.dur; r.n++; byTS.set(k, r); }
for (const [k, r] of [...byTS].sort((a, b) => b[1].us - a[1].us).slice(0, 40)) console.log((r.us / N / 1000).toFixed(3).padStart(7), String(r.n / N).padStart(4), k);
