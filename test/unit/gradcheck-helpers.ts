import { Graph, exportOnnx, grad, mul, sumAll, type DType, type Tensor } from '../../src/graph/index.ts';
import { Session, type FeedValue } from '../../src/runtime/index.ts';
import { Rng } from '../../src/util/rng.ts';

export interface InputSpec {
  shape: number[];
  dtype?: DType;
  /** Value range for random init (default [-1, 1]). */
  range?: [number, number];
  /** Fixed integer values (for index inputs, never differentiated). */
  ints?: number[];
  /** Differentiate with respect to this input (default: true for float inputs). */
  diff?: boolean;
}

export interface GradcheckResult {
  maxAbsErr: number;
  maxRelErr: number;
  checked: number;
  worst: string;
}

/**
 * Central finite differences through onnxruntime against the autodiff gradient. loss = sum(f(x) * R) with a
 * fixed random R, so every output element's Jacobian row contributes.
 */
export async function gradcheck(
  build: (...xs: Tensor[]) => Tensor,
  specs: InputSpec[],
  opts: { seed?: number; eps?: number; maxCoords?: number; dtype?: DType } = {},
): Promise<GradcheckResult> {
  const rng = new Rng(opts.seed ?? 1);
  const fdt: DType = opts.dtype ?? 'float64';
  const g = new Graph();
  const inputs = specs.map((s, i) => g.input(`x${i}`, s.shape, s.ints ? (s.dtype ?? 'int64') : fdt));
  const out = build(...inputs);
  const R = new Float64Array(out.size).map(() => rng.uniform(-1, 1));
  const Rt = g.constant(fdt === 'float64' ? R : Float32Array.from(R), out.shape, fdt);
  const loss = sumAll(mul(out, Rt));
  const diffIdx = specs.map((s, i) => (!s.ints && s.diff !== false ? i : -1)).filter((i) => i >= 0);
  const grads = grad(loss, diffIdx.map((i) => inputs[i]));
  g.output(loss, 'loss');
  grads.forEach((t, k) => g.output(t, `grad${k}`));
  const session = await Session.create(exportOnnx(g), { threads: 1 });
  const values = specs.map((s) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (s.ints) return BigInt64Array.from(s.ints.map((v) => BigInt(v)));
    const [lo, hi] = s.range ?? [-1, 1];
    const arr = fdt === 'float64' ? new Float64Array(n) : new Float32Array(n);
    for (let i = 0; i < n; i++) arr[i] = rng.uniform(lo, hi);
    return arr;
  });
  const feeds = (): Record<string, FeedValue> =>
    Object.fromEntries(specs.map((s, i) => [`x${i}`, { data: values[i], dims: s.shape } as FeedValue]));
  const res = await session.run(feeds());
  const eps = opts.eps ?? (fdt === 'float64' ? 1e-6 : 1e-2);
  let maxAbsErr = 0;
  let maxRelErr = 0;
  let checked = 0;
  let worst = '';
  for (let k = 0; k < diffIdx.length; k++) {
    const i = diffIdx[k];
    const x = values[i] as Float64Array | Float32Array;
    const analytic = res[`grad${k}`] as Float64Array | Float32Array;
    const coords = pickCoords(x.length, opts.maxCoords ?? 24, rng);
    for (const c of coords) {
      const orig = x[c];
      x[c] = orig + eps;
      const lp = Number((await session.run(feeds(), ['loss'])).loss[0]);
      x[c] = orig - eps;
      const lm = Number((await session.run(feeds(), ['loss'])).loss[0]);
      x[c] = orig;
      const numeric = (lp - lm) / (2 * eps);
      const a = analytic[c];
      const abs = Math.abs(a - numeric);
      const rel = abs / Math.max(1, Math.abs(numeric), Math.abs(a));
      if (rel > maxRelErr) {
        maxRelErr = rel;
        worst = `input ${i} coord ${c}: analytic ${a} numeric ${numeric}`;
      }
      maxAbsErr = Math.max(maxAbsErr, abs);
      checked++;
    }
  }
  await session.release();
  return { maxAbsErr, maxRelErr, checked, worst };
}

function pickCoords(n: number, max: number, rng: Rng): number[] {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const all = Int32Array.from({ length: n }, (_, i) => i);
  rng.shuffle(all);
  return [...all.slice(0, max)];
}
