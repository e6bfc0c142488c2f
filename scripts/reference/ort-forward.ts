// Times an ONNX forward graph exported by scripts/reference/vit_torch.py in
// onnxruntime-node, prints the per-op-type kernel time breakdown from ORT's
// profiler and the op types present in ORT's optimized model.
//
//   npx node --import=tsx scripts/reference/ort-forward.ts /tmp/vit_b64.onnx [/tmp/vit_b1.onnx ...]
//
// Env: ITERS (default 50), PROF_ITERS (default 50), OUT_DIR (default /tmp/ort-ref).
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { basename } from 'node:path';

const { onnx } = onnxProto;
const ITERS = Number(process.env.ITERS ?? 50);
const PROF_ITERS = Number(process.env.PROF_ITERS ?? 50);
const OUT_DIR = process.env.OUT_DIR ?? '/tmp/ort-ref';
mkdirSync(OUT_DIR, { recursive: true });

const baseOpts: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 2,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
  executionMode: 'sequential',
};

function feedsFor(s: ort.InferenceSession): Record<string, ort.Tensor> {
  const name = s.inputNames[0]!;
  const meta = s.inputMetadata.find((m) => m.name === name) as { shape?: readonly (number | string)[] } | undefined;
  const shape = (meta?.shape ?? [64, 1, 28, 28]).map((d) => (typeof d === 'number' ? d : 64));
  const n = shape.reduce((a, b) => a * b, 1);
  return { [name]: new ort.Tensor('float32', new Float32Array(n).map((_, i) => Math.sin(i)), shape) };
}

function readF32(p: string): Float32Array {
  const b = readFileSync(p); // may be a view into Node's shared pool: copy out exactly its bytes
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

async function timeModel(path: string): Promise<void> {
  const tag = basename(path, '.onnx');
  const optPath = `${OUT_DIR}/${tag}.opt.onnx`;

  // 1) Plain timing (no profiler overhead).
  const s = await ort.InferenceSession.create(path, { ...baseOpts, optimizedModelFilePath: optPath });
  const feeds = feedsFor(s);
  const batch = feeds[s.inputNames[0]!]!.dims[0];
  // Correctness check against PyTorch when vit_torch.py --export left its I/O dump.
  if (existsSync(path + '.in.f32') && existsSync(path + '.out.f32')) {
    const inp = readF32(path + '.in.f32');
    const ref = readF32(path + '.out.f32');
    const t = feeds[s.inputNames[0]!]!;
    const out = await s.run({ [s.inputNames[0]!]: new ort.Tensor('float32', inp, t.dims) });
    let maxErr = 0;
    s.outputNames.forEach((name, e) => {
      const d = out[name]!.data as Float32Array;
      for (let i = 0; i < d.length; i++) maxErr = Math.max(maxErr, Math.abs(d[i]! - ref[e * d.length + i]!));
    });
    console.log(`check vs torch: ${s.outputNames.length} exits, max |ort - torch| = ${maxErr.toExponential(2)}`);
  }
  for (let i = 0; i < 10; i++) await s.run(feeds);
  const ts: number[] = [];
  for (let i = 0; i < ITERS; i++) {
    const t0 = performance.now();
    await s.run(feeds);
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  const med = ts[Math.floor(ts.length / 2)]!;
  console.log(JSON.stringify({ model: path, batch, iters: ITERS, median_ms: +med.toFixed(3), min_ms: +ts[0]!.toFixed(3), p90_ms: +ts[Math.floor(0.9 * (ts.length - 1))]!.toFixed(3) }));
  await s.release();

  // 2) Profiled run: per-op-type kernel time.
  const prefix = `${OUT_DIR}/prof_${tag}_${process.pid}`;
  const ps = await ort.InferenceSession.create(path, { ...baseOpts, enableProfiling: true, profileFilePrefix: prefix });
  const WARM = 5;
  for (let i = 0; i < WARM + PROF_ITERS; i++) await ps.run(feeds);
  ps.endProfiling();
  await ps.release();
  const pbase = basename(prefix);
  const file = readdirSync(OUT_DIR).filter((f) => f.startsWith(pbase) && f.endsWith('.json')).sort().pop();
  if (!file) throw new Error('no profile file for ' + prefix);
  const ev = JSON.parse(readFileSync(`${OUT_DIR}/${file}`, 'utf8')) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
  const runs = ev.filter((e) => e.cat === 'Session' && e.name === 'model_run').length || WARM + PROF_ITERS;
  const agg = new Map<string, { us: number; n: number }>();
  for (const e of ev) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
    const k = e.args?.op_name ?? '?';
    const a = agg.get(k) ?? { us: 0, n: 0 };
    a.us += e.dur; a.n += 1; agg.set(k, a);
  }
  const tot = [...agg.values()].reduce((a, b) => a + b.us, 0);
  console.log(`profile ${file}: ${runs} runs, kernel total ${(tot / runs).toFixed(0)} us/run`);
  console.log('  op_type                        us/run   %     nodes/run');
  for (const [k, v] of [...agg].sort((a, b) => b[1].us - a[1].us)) {
    console.log(`  ${k.padEnd(28)} ${(v.us / runs).toFixed(0).padStart(7)} ${((100 * v.us) / tot).toFixed(1).padStart(5)} ${(v.n / runs).toFixed(0).padStart(6)}`);
  }

  // 3) Op types in the optimized model.
  for (const [label, p] of [['original', path], ['optimized', optPath]] as const) {
    const m = onnx.ModelProto.decode(readFileSync(p));
    const counts = new Map<string, number>();
    for (const n of m.graph!.node!) {
      const key = (n.domain ? `${n.domain}.` : '') + n.opType;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    const nodes = m.graph!.node!.length;
    console.log(`${label} model ${p}: ${nodes} nodes; ` + [...counts].sort((a, b) => b[1] - a[1]).map(([k, c]) => `${k}x${c}`).join(', '));
    if (label === 'optimized' && process.env.DUMP_NODES) {
      for (const n of m.graph!.node!) {
        // AttributeProto.type: 1 FLOAT, 2 INT, 3 STRING, 7 INTS
        const attrs = (n.attribute ?? []).map((a) => `${a.name}=${a.type === 1 ? a.f : a.type === 2 ? String(a.i) : a.type === 7 ? `[${(a.ints ?? []).join(',')}]` : a.type === 3 ? Buffer.from(a.s ?? []).toString() : '?'}`).join(' ');
        console.log(`    ${n.domain ? n.domain + '.' : ''}${n.opType} ${n.name} [${(n.input ?? []).join(', ')}] -> [${(n.output ?? []).join(', ')}] ${attrs}`);
      }
    }
  }
}

for (const p of process.argv.slice(2)) await timeModel(p);
