/**
 * Pad (constant zero) and AddPadded (each the other's VJP).
 */
import { GraphError } from '../graph.ts';
import { type OpDef } from './registry.ts';
import { sameFloat } from './shape-rules.ts';
import { add, floor, slice, pad } from './api.ts';

/** This module's op declarations (registered by ops/index.ts). */
export const ops: OpDef[] = [];

/** Zero padding (constant mode). */
ops.push({
  name: 'Pad',
  infer: (ins, attrs) => {
    const b = attrs.before as number[];
    const a = attrs.after as number[];
    if (b.length !== ins[0].rank || a.length !== ins[0].rank || [...a, ...b].some((p) => p < 0)) {
      throw new GraphError('Pad', 'pads must be non-negative, one per axis');
    }
    return [{ shape: ins[0].shape.map((d, i) => d + b[i] + a[i]), dtype: ins[0].dtype }];
  },
  emit: (e, n) => {
    e.node('Pad', [e.name(n.inputs[0]), e.i64([...(n.attrs.before as number[]), ...(n.attrs.after as number[])])], [e.name(n.outputs[0])], { mode: 'constant' });
  },
  vjp: (n, [g]) => {
    const b = n.attrs.before as number[];
    const x = n.inputs[0];
    const axes = x.shape.map((_, i) => i);
    return [slice(g!, b, b.map((s, i) => s + x.shape[i]), axes)];
  },
});

/**
 * dense + pad(small, before): `small` added into the block of `dense` that starts at offset `before`, as one
 * ScatterND(reduction add). Autodiff emits it when it accumulates a Slice's gradient (a zero-padded tensor) into
 * a dense one, so the padded copy is never materialized (the exit heads' CLS slices, for instance). Every axis
 * after the last offset/narrowed axis must be full.
 */
ops.push({
  name: 'AddPadded',
  infer: (ins, attrs) => {
    const [dense, small] = ins;
    const before = attrs.before as number[];
    sameFloat('AddPadded', ins);
    if (dense.rank !== small.rank || before.length !== dense.rank) throw new GraphError('AddPadded', 'dense, small and offsets must have the same rank');
    if (before.some((b, i) => !(Number.isInteger(b) && b >= 0 && b + small.shape[i] <= dense.shape[i]))) {
      throw new GraphError('AddPadded', `block [${small.shape.join(',')}] at [${before.join(',')}] exceeds [${dense.shape.join(',')}]`);
    }
    return [{ shape: dense.shape, dtype: dense.dtype }];
  },
  emit: (e, n) => {
    const [dense, small] = n.inputs;
    const before = n.attrs.before as number[];
    let last = -1;
    for (let i = 0; i < dense.rank; i++) if (before[i] !== 0 || small.shape[i] !== dense.shape[i]) last = i;
    const lead = small.shape.slice(0, last + 1);
    const idx: number[] = [];
    const count = lead.reduce((a, b) => a * b, 1);
    for (let f = 0; f < count; f++) {
      const coord: number[] = [];
      let r = f;
      for (let i = lead.length - 1; i >= 0; i--) {
        coord.unshift((r % lead[i]) + before[i]);
        r = Math.floor(r / lead[i]);
      }
      idx.push(...coord);
    }
    const indices = e.temp();
    e.node('Reshape', [e.i64(idx), e.i64([...lead, last + 1])], [indices]);
    e.node('ScatterND', [e.name(dense), indices, e.name(small)], [e.name(n.outputs[0])], { reduction: 'add' });
  },
  vjp: (n, [g], needs) => {
    const [, small] = n.inputs;
    const before = n.attrs.before as number[];
    const axes = small.shape.map((_, i) => i);
    return [needs[0] ? g : null, needs[1] ? slice(g!, before, before.map((b, i) => b + small.shape[i]), axes) : null];
  },
});
