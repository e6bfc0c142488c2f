/**
 * ONNX Resize with constant scales or sizes, mapped onto ops that already have VJPs: per resized spatial axis,
 * `nearest` is a Gather with constant indices (its VJP scatter-adds) and `linear` is a MatMul by a constant
 * [in, out] interpolation matrix (two taps per output, weights 1 − r and r), so no new primitive and no new
 * gradient is needed. The index and weight rules follow the ONNX operator spec (opset 10..19): the coordinate
 * transformation (half_pixel, pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn), the nearest
 * rounding (round_prefer_floor, round_prefer_ceil, floor, ceil) and edge clamping. Not supported (a typed error from
 * the caller): cubic, tf_crop_and_resize, antialias, an `axes` attribute, keep_aspect_ratio_policy other than
 * stretch, resizing the batch or channel axis, and scales or sizes that depend on tensor values.
 */
import * as G from '../../graph/index.ts';
import type { Tensor } from '../../graph/index.ts';

/** How one axis is resized: gather these source indices, or multiply by this [in, out] matrix (row-major). */
export type AxisResize = { axis: number; out: number; kind: 'nearest'; index: number[] } | { axis: number; out: number; kind: 'linear'; matrix: number[] };

/** A Resize node's attributes (as the importer reads them). */
export interface ResizeAttrs {
  mode?: string;
  coordinate_transformation_mode?: string;
  nearest_mode?: string;
  antialias?: number;
  axes?: number[];
  keep_aspect_ratio_policy?: string;
}

const TRANSFORMS = ['half_pixel', 'pytorch_half_pixel', 'align_corners', 'asymmetric', 'tf_half_pixel_for_nn'];
const ROUNDING = ['round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil'];

/**
 * The per-axis plan of a Resize of a tensor of `shape` by `scales` (one per axis; empty when `sizes` is given) or to
 * `sizes`. Axes whose size and scale stay 1 are left out. Throws Error(reason) on a form it does not support.
 */
export function planResize(shape: readonly number[], scales: readonly number[], sizes: readonly number[], a: ResizeAttrs): AxisResize[] {
  const mode = a.mode ?? 'nearest';
  const ct = a.coordinate_transformation_mode ?? 'half_pixel';
  const nm = a.nearest_mode ?? 'round_prefer_floor';
  if (mode !== 'nearest' && mode !== 'linear') throw new Error(`Resize mode '${mode}' is not supported (nearest and linear are); re-export with mode nearest or (bi)linear`);
  if (!TRANSFORMS.includes(ct)) throw new Error(`Resize coordinate_transformation_mode '${ct}' is not supported (${TRANSFORMS.join(', ')} are)`);
  if (mode === 'nearest' && !ROUNDING.includes(nm)) throw new Error(`Resize nearest_mode '${nm}' is not supported`);
  if (a.antialias) throw new Error('Resize with antialias=1 is not supported; re-export with antialias=False');
  if (a.axes !== undefined) throw new Error('Resize with an axes attribute is not supported; give scales or sizes for every axis');
  if ((a.keep_aspect_ratio_policy ?? 'stretch') !== 'stretch') throw new Error(`Resize keep_aspect_ratio_policy '${a.keep_aspect_ratio_policy}' is not supported (stretch is)`);
  const r = shape.length;
  if (scales.length > 0 && scales.length !== r) throw new Error(`Resize scales have ${scales.length} values for a rank-${r} input`);
  if (scales.length === 0 && sizes.length !== r) throw new Error(`Resize needs constant scales or sizes for each of the ${r} axes (got ${sizes.length} sizes)`);
  const plan: AxisResize[] = [];
  for (let i = 0; i < r; i++) {
    const inp = shape[i];
    const out = scales.length ? Math.floor(inp * scales[i]) : sizes[i];
    const s = scales.length ? scales[i] : out / inp;
    if (!(s > 0) || !Number.isFinite(s) || out < 1) throw new Error(`Resize scale ${s} on axis ${i} is not a positive finite number giving at least 1 output`);
    if (out === inp && s === 1) continue;
    if (i < 2) throw new Error(`Resize of axis ${i} (batch or channels) is not supported; only spatial axes may be resized`);
    const coord = (o: number): number => {
      if (ct === 'half_pixel') return (o + 0.5) / s - 0.5;
      if (ct === 'pytorch_half_pixel') return out > 1 ? (o + 0.5) / s - 0.5 : 0;
      if (ct === 'align_corners') return out === 1 ? 0 : (o * (inp - 1)) / (out - 1);
      if (ct === 'asymmetric') return o / s;
      return (o + 0.5) / s; // tf_half_pixel_for_nn
    };
    const clamp = (k: number): number => Math.min(inp - 1, Math.max(0, k));
    if (mode === 'nearest') {
      const round = (x: number): number => {
        if (nm === 'floor') return Math.floor(x);
        if (nm === 'ceil') return Math.ceil(x);
        const f = Math.floor(x);
        if (x - f === 0.5) return nm === 'round_prefer_floor' ? f : f + 1;
        return Math.round(x);
      };
      plan.push({ axis: i, out, kind: 'nearest', index: Array.from({ length: out }, (_, o) => clamp(round(coord(o)))) });
    } else {
      const m = new Array<number>(inp * out).fill(0);
      for (let o = 0; o < out; o++) {
        const x = coord(o);
        const f = Math.floor(x);
        const w = x - f;
        m[clamp(f) * out + o] += 1 - w;
        m[clamp(f + 1) * out + o] += w;
      }
      plan.push({ axis: i, out, kind: 'linear', matrix: m });
    }
  }
  return plan;
}

/** Apply a plan to a float tensor: a Gather per nearest axis, a MatMul (moved to the last axis) per linear one. */
export function resizeTensor(x: Tensor, plan: readonly AxisResize[]): Tensor {
  const last = x.rank - 1;
  for (const p of plan) {
    if (p.kind === 'nearest') {
      x = G.gather(x, x.graph.constant(BigInt64Array.from(p.index.map(BigInt)), [p.out], 'int64'), p.axis);
      continue;
    }
    const data = x.dtype === 'float64' ? Float64Array.from(p.matrix) : Float32Array.from(p.matrix);
    const m = x.graph.constant(data, [x.shape[p.axis], p.out], x.dtype);
    if (p.axis === last) x = G.matmul(x, m);
    else {
      const perm = x.shape.map((_, i) => (i === p.axis ? last : i === last ? p.axis : i));
      x = G.transpose(G.matmul(G.transpose(x, perm), m), perm);
    }
  }
  return x;
}
