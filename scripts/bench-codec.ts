/**
 * Codec and aggregation benchmark. `npm run bench:codec -- --json` prints one JSON object; without `--json` a
 * table. Not part of `npm test`. Seeded: the same machine gives the same bytes and errors on every run.
 *
 * Updates: the vit-tiny LoRA update (dim 64, depth 4, 10 classes, LoRA r=8 on q and v, plus exit heads) and a
 * synthetic one about 100x larger (dim 512, depth 13, r=16, 100 classes). Values: Gaussian per tensor with a
 * log-uniform per-tensor scale in [1e-4, 1e-2] (LoRA deltas differ in scale across layers).
 */
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { getAggregator } from '../src/aggregate/index.ts';
import {
  decodeUpdate, encodeUpdate, toUpdateManifest, type ModelUpdate, type TensorMap, type UpdateEncodeOptions, type UpdateManifest, type ValueBits,
} from '../src/update/index.ts';
import { Rng } from '../src/util/rng.ts';
import { VitConfigSchema, trainableSpecs } from '../src/model/vit.ts';

/** Update manifest of a vit-tiny-shaped model (LoRA on q and v + exit heads), from the model's own specs. */
function manifestFor(dim: number, depth: number, rank: number, classes: number): UpdateManifest {
  const cfg = VitConfigSchema.parse({ dim, depth, classes });
  return toUpdateManifest(trainableSpecs(cfg, 'lora+heads', { rank, alpha: 2 * rank, targets: ['q', 'v'] }), { prototypes: { exits: depth, classes, dim } });
}

function deltasFor(m: UpdateManifest, rng: Rng): TensorMap {
  const out: TensorMap = new Map();
  for (const s of m.tensors) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const scale = 10 ** rng.uniform(-4, -2);
    out.set(s.name, Float32Array.from({ length: n }, () => rng.normal() * scale));
  }
  return out;
}

function update(deltas: TensorMap, rank: number, sampleCount = 600): ModelUpdate {
  return {
    federation: 'bench', round: 1, baseVersion: 0, sender: '12D3KooWBenchBenchBenchBenchBenchBenchBenchBenchBenc', sampleCount, loraRank: rank,
    deltas, prototypes: [],
  };
}

function relL2(a: TensorMap, b: TensorMap): number {
  let num = 0, den = 0;
  for (const [k, x] of a) {
    const y = b.get(k)!;
    for (let i = 0; i < x.length; i++) { num += (x[i] - y[i]) ** 2; den += x[i] ** 2; }
  }
  return Math.sqrt(num / den);
}

/** Median wall time in ms over `reps` runs of fn (after one warm-up). */
function time(fn: () => void, reps: number): number {
  fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  ts.sort((x, y) => x - y);
  return ts[Math.floor(ts.length / 2)];
}

const round = (x: number, d = 4): number => Number(x.toPrecision(d));

function benchUpdate(label: string, m: UpdateManifest, rank: number, reps: number, withBrotli: boolean) {
  const deltas = deltasFor(m, new Rng(42));
  const u = update(deltas, rank);
  const numel = [...deltas.values()].reduce((s, d) => s + d.length, 0);
  const denseBytes = 4 * numel;
  const rows = [];
  const configs: { topk: number; bits: ValueBits; brotli: boolean }[] = [];
  for (const topk of [0.01, 0.05, 0.1, 1]) for (const bits of [1, 4, 8, 32] as ValueBits[]) configs.push({ topk, bits, brotli: false });
  if (withBrotli) for (const topk of [0.1, 1]) for (const bits of [8, 32] as ValueBits[]) configs.push({ topk, bits, brotli: true });
  for (const { topk, bits, brotli } of configs) {
    const opts: UpdateEncodeOptions = { bits, topk: topk < 1 ? { fraction: topk, scope: 'global' } : undefined, seed: 7, brotli };
    const enc = encodeUpdate(u, m, opts);
    const dec = decodeUpdate(enc.bytes, m);
    const encMs = time(() => encodeUpdate(u, m, opts), reps);
    const decMs = time(() => decodeUpdate(enc.bytes, m), reps);
    const payload = enc.accounting.tensors.reduce((s, t) => s + t.valueBytes + t.indexBytes, 0);
    rows.push({
      topkPercent: topk * 100, bits, brotli, bytes: enc.bytes.length, ratioToDenseF32: round(enc.bytes.length / denseBytes),
      relL2Error: round(relL2(deltas, dec.deltas)), encodeMBps: round(denseBytes / 1e6 / (encMs / 1e3), 3), decodeMBps: round(denseBytes / 1e6 / (decMs / 1e3), 3),
      framingBytes: enc.accounting.bodyBytes - payload + enc.accounting.envelopeBytes,
    });
  }
  return { update: label, tensors: m.tensors.length, numel, denseF32Bytes: denseBytes, results: rows };
}

function benchAggregation(reps: number) {
  const m = manifestFor(64, 4, 8, 10);
  const rng = new Rng(3);
  const out = [];
  for (const n of [8, 32, 128]) {
    const ups = Array.from({ length: n }, (_, i) => ({ deltas: deltasFor(m, rng), sampleCount: 100 + i, loraRank: 8 }));
    const mixed = ups.map((u, i) => {
      const r = [2, 4, 8][i % 3];
      const deltas: TensorMap = new Map();
      for (const s of m.tensors) {
        const d = u.deltas.get(s.name)!;
        if (s.loraAxis === 1) deltas.set(s.name, Float32Array.from({ length: 64 * r }, (_, k) => d[Math.floor(k / r) * 8 + (k % r)]));
        else if (s.loraAxis === 0) deltas.set(s.name, d.slice(0, r * 64));
        else deltas.set(s.name, d);
      }
      return { deltas, sampleCount: u.sampleCount, loraRank: r };
    });
    const rules: [string, typeof ups, object][] = [
      ['fedavg', ups, {}], ['fedadam', ups, {}], ['fedyogi', ups, {}], ['median', ups, {}], ['trimmed-mean', ups, {}], ['norm-bound', ups, {}],
      ['ffa-lora', ups.map((u) => ({ ...u, deltas: new Map([...u.deltas].map(([k, v]) => [k, k.endsWith('lora_a') ? new Float32Array(v.length) : v])) })), { manifest: m }],
      ['flexlora', ups, { manifest: m, loraAlpha: 16 }], ['flexlora (ranks 2/4/8)', mixed, { manifest: m, loraAlpha: 16, targetRank: 8 }],
      ['hetlora-zero (ranks 2/4/8)', mixed, { manifest: m }], ['hetlora-replicate (ranks 2/4/8)', mixed, { manifest: m }],
    ];
    for (const [name, input, opts] of rules) {
      const rule = getAggregator(name.split(' ')[0]);
      out.push({ rule: name, updates: n, ms: round(time(() => rule(input, opts), reps), 3) });
    }
  }
  return out;
}

const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const result = {
  bench: 'codec',
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  topkScope: 'global',
  quantBlockSize: 128,
  updates: [
    benchUpdate('vit-tiny LoRA r=8 (+exit heads)', manifestFor(64, 4, 8, 10), 8, quick ? 3 : 15, true),
    benchUpdate('synthetic ~100x (dim 512, depth 13, r=16, 100 classes)', manifestFor(512, 13, 16, 100), 16, quick ? 1 : 3, false),
  ],
  aggregation: benchAggregation(quick ? 1 : 5),
};
if (json) {
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
} else {
  for (const u of result.updates) {
    process.stdout.write(`\n${u.update}: ${u.numel} values, ${u.denseF32Bytes} B dense f32\n`);
    process.stdout.write('top-k%  bits  brotli      bytes   ratio   rel-L2   enc MB/s   dec MB/s\n');
    for (const r of u.results) {
      process.stdout.write(`${String(r.topkPercent).padStart(6)}  ${String(r.bits).padStart(4)}  ${String(r.brotli).padStart(6)}  ${String(r.bytes).padStart(9)}  ${r.ratioToDenseF32.toFixed(4).padStart(6)}  ${r.relL2Error.toFixed(4).padStart(7)}  ${String(r.encodeMBps).padStart(9)}  ${String(r.decodeMBps).padStart(9)}\n`);
    }
  }
  process.stdout.write('\naggregation (vit-tiny updates)\n');
  for (const a of result.aggregation) process.stdout.write(`${a.rule.padEnd(34)} n=${String(a.updates).padStart(3)}  ${a.ms} ms\n`);
}
