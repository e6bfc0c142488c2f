/**
 * Conv, ConvTranspose and MaxPool (sharing the window attributes and output-size rule).
 *
 * Conv's VJP: dX is ConvTranspose(dY, W) with the same strides, pads, dilations and groups (output_padding makes
 * the shape match X exactly); dW (per group) is the correlation of X with dY, itself a Conv over the batch axis
 * (X as [C, N, H, W], dY as [M, N, Ho, Wo] weights, strides and dilations swapped), cropped to the kernel;
 * dB = sum of dY over N, H, W.
 */
import { GraphError, isFloat, type Tensor, type Attrs } from '../graph.ts';
import { apply, type OpDef } from './registry.ts';
import { zerosLike } from './grad-helpers.ts';
import { floor, reduceSum, reshape, transpose, concat, slice, scatterAdd, conv2d } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

interface Conv2dAttrs {
  strides: [number, number];
  /** [top, left, bottom, right] (ONNX order: begins then ends). */
  pads: [number, number, number, number];
  dilations: [number, number];
  group: number;
}

function convAttrs(op: string, attrs: Attrs): Conv2dAttrs {
  const ints = (k: string, n: number, dflt: number): number[] => {
    const v = attrs[k] ?? Array(n).fill(dflt);
    if (!Array.isArray(v) || v.length !== n || v.some((d) => !Number.isInteger(d) || (d as number) < 0)) throw new GraphError(op, `${k} must be ${n} non-negative integers`);
    return v as number[];
  };
  const strides = ints('strides', 2, 1);
  const dilations = ints('dilations', 2, 1);
  if (strides.some((s) => s < 1) || dilations.some((d) => d < 1)) throw new GraphError(op, 'strides and dilations must be >= 1');
  const group = (attrs.group as number | undefined) ?? 1;
  if (!Number.isInteger(group) || group < 1) throw new GraphError(op, 'group must be a positive integer');
  return { strides: strides as [number, number], pads: ints('pads', 4, 0) as Conv2dAttrs['pads'], dilations: dilations as [number, number], group };
}

/** Output size of one spatial axis of a convolution or pooling window. */
function outSize(n: number, k: number, s: number, pBegin: number, pEnd: number, d: number): number {
  return Math.floor((n + pBegin + pEnd - (k - 1) * d - 1) / s) + 1;
}

/** y = conv2d(x [N, C, H, W], w [M, C/group, kh, kw]) (+ b [M]). */
ops.push({
  name: 'Conv',
  infer: (ins, attrs) => {
    const [x, w, b] = ins;
    if (!isFloat(x.dtype) || w.dtype !== x.dtype || (b && b.dtype !== x.dtype)) throw new GraphError('Conv', 'needs float inputs of one dtype');
    if (x.rank !== 4 || w.rank !== 4) throw new GraphError('Conv', `only 2-D convolution: x [N,C,H,W] and w [M,C/group,kh,kw], got [${x.shape.join(',')}] and [${w.shape.join(',')}]`);
    const a = convAttrs('Conv', attrs);
    const [N, C, H, W] = x.shape;
    const [M, Cg, kh, kw] = w.shape;
    if (C % a.group !== 0 || M % a.group !== 0 || Cg !== C / a.group) throw new GraphError('Conv', `channels ${C} and weight [${w.shape.join(',')}] do not fit group ${a.group}`);
    if (b && (b.rank !== 1 || b.shape[0] !== M)) throw new GraphError('Conv', `bias must be [${M}]`);
    const ho = outSize(H, kh, a.strides[0], a.pads[0], a.pads[2], a.dilations[0]);
    const wo = outSize(W, kw, a.strides[1], a.pads[1], a.pads[3], a.dilations[1]);
    if (ho < 1 || wo < 1) throw new GraphError('Conv', `kernel [${kh},${kw}] does not fit input [${H},${W}]`);
    return [{ shape: [N, M, ho, wo], dtype: x.dtype }];
  },
  emit: (e, n) => {
    const a = convAttrs('Conv', n.attrs);
    e.node('Conv', n.inputs.map((t) => e.name(t)), [e.name(n.outputs[0])], { strides: a.strides, pads: a.pads, dilations: a.dilations, group: a.group, kernel_shape: n.inputs[1].shape.slice(2) });
  },
  vjp: (n, [g], needs) => {
    const [x, w, b] = n.inputs;
    const a = convAttrs('Conv', n.attrs);
    const [, , H, W] = x.shape;
    const [M, Cg, kh, kw] = w.shape;
    const [, , ho, wo] = g!.shape;
    let gx: Tensor | null = null;
    if (needs[0]) {
      const extra = (size: number, o: number, k: number, ax: 0 | 1): number => size - (a.strides[ax] * (o - 1) + (k - 1) * a.dilations[ax] + 1 - a.pads[ax] - a.pads[ax + 2]);
      gx = apply('ConvTranspose', [g!, w], { ...a, outputPadding: [extra(H, ho, kh, 0), extra(W, wo, kw, 1)] })[0];
    }
    let gw: Tensor | null = null;
    if (needs[1]) {
      const per = (xg: Tensor, gg: Tensor): Tensor => {
        const r = apply('Conv', [transpose(xg, [1, 0, 2, 3]), transpose(gg, [1, 0, 2, 3])], { strides: a.dilations, dilations: a.strides, pads: a.pads, group: 1 })[0];
        return transpose(slice(r, [0, 0], [kh, kw], [2, 3]), [1, 0, 2, 3]);
      };
      if (a.group === 1) gw = per(x, g!);
      else {
        if (a.group > 64) throw new GraphError('Conv', `weight gradient of a convolution with ${a.group} groups is not supported (at most 64): keep this weight frozen`);
        const mg = M / a.group;
        const parts: Tensor[] = [];
        for (let k = 0; k < a.group; k++) parts.push(per(slice(x, [k * Cg], [(k + 1) * Cg], [1]), slice(g!, [k * mg], [(k + 1) * mg], [1])));
        gw = concat(parts, 0);
      }
    }
    return [gx, gw, b && needs[2] ? reduceSum(g!, [0, 2, 3], false) : null];
  },
});

/**
 * The transpose of Conv with respect to its input: x [N, M, h, w], w [M, C/group, kh, kw] to [N, C, H, W], with
 * `outputPadding` cells added at the end of each spatial axis. Used by Conv's VJP; its own gradient is not declared.
 */
ops.push({
  name: 'ConvTranspose',
  infer: (ins, attrs) => {
    const [x, w] = ins;
    const a = convAttrs('ConvTranspose', attrs);
    const op = attrs.outputPadding as number[];
    if (x.rank !== 4 || w.rank !== 4 || x.shape[1] !== w.shape[0]) throw new GraphError('ConvTranspose', 'x [N,M,h,w] and w [M,C/group,kh,kw] expected');
    const size = (i: 0 | 1): number => a.strides[i] * (x.shape[2 + i] - 1) + op[i] + (w.shape[2 + i] - 1) * a.dilations[i] + 1 - a.pads[i] - a.pads[i + 2];
    return [{ shape: [x.shape[0], w.shape[1] * a.group, size(0), size(1)], dtype: x.dtype }];
  },
  emit: (e, n) => {
    const a = convAttrs('ConvTranspose', n.attrs);
    e.node('ConvTranspose', n.inputs.map((t) => e.name(t)), [e.name(n.outputs[0])], {
      strides: a.strides, pads: a.pads, dilations: a.dilations, group: a.group, kernel_shape: n.inputs[1].shape.slice(2), output_padding: n.attrs.outputPadding as number[],
    });
  },
});

/**
 * 2-D max pooling (no ceil mode), outputs [y, indices]: indices flat over the whole input (ONNX's storage order
 * 0). VJP: the gradient scattered (added) back at the arg-max positions.
 */
ops.push({
  name: 'MaxPool',
  infer: (ins, attrs) => {
    const [x] = ins;
    if (!isFloat(x.dtype) || x.rank !== 4) throw new GraphError('MaxPool', `only 2-D pooling of a float [N,C,H,W] tensor, got [${x.shape.join(',')}] ${x.dtype}`);
    const k = attrs.kernel as number[];
    if (!Array.isArray(k) || k.length !== 2 || k.some((d) => !Number.isInteger(d) || d < 1)) throw new GraphError('MaxPool', 'kernel must be 2 positive integers');
    const a = convAttrs('MaxPool', attrs);
    const shape = [x.shape[0], x.shape[1], outSize(x.shape[2], k[0], a.strides[0], a.pads[0], a.pads[2], a.dilations[0]), outSize(x.shape[3], k[1], a.strides[1], a.pads[1], a.pads[3], a.dilations[1])];
    if (shape[2] < 1 || shape[3] < 1) throw new GraphError('MaxPool', 'kernel larger than the padded input');
    return [{ shape, dtype: x.dtype }, { shape, dtype: 'int64' }];
  },
  emit: (e, n) => {
    const a = convAttrs('MaxPool', n.attrs);
    const outs = [e.name(n.outputs[0]), ...(e.isLive(n.outputs[1]) ? [e.name(n.outputs[1])] : [])];
    e.node('MaxPool', [e.name(n.inputs[0])], outs, { kernel_shape: n.attrs.kernel as number[], strides: a.strides, pads: a.pads, dilations: a.dilations });
  },
  vjp: (n, [g]) => {
    const [x] = n.inputs;
    const idx = n.outputs[1];
    if (!g) return [null];
    const flat = scatterAdd(zerosLike(reshape(x, [x.size])), reshape(idx, [idx.size]), reshape(g, [g.size]), 0);
    return [reshape(flat, x.shape)];
  },
});
