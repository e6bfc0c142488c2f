import { FmflError } from '../util/errors.ts';

/** Named float32 tensors: parameters, gradients or optimizer buffers. */
export type ParamSet = ReadonlyMap<string, Float32Array> | Readonly<Record<string, Float32Array>>;

/** An optimizer got invalid hyperparameters, mismatched gradients, non-finite gradients or a bad state. */
export class OptimizerError extends FmflError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('OPTIMIZER', message, options);
  }
}

/**
 * Serializable optimizer state for checkpoints. `buffers` keys are `<slot>:<param name>` (AdamW slots
 * `exp_avg` and `exp_avg_sq`, SGD slot `momentum_buffer`, named as in PyTorch); the arrays are copies.
 * Everything except `buffers` is plain JSON.
 */
export interface OptimizerState {
  kind: 'adamw' | 'sgd';
  /** Number of steps taken. */
  step: number;
  /** Hyperparameters at the time of the snapshot (restored by loadState, as PyTorch does). */
  hyper: Record<string, number | boolean | null>;
  /** Parameter names in order. */
  params: string[];
  buffers: Record<string, Float32Array>;
}

/** The interface shared by {@link AdamW} and {@link SGD}. */
export interface Optimizer {
  /** Learning rate; may be changed between steps (schedules). */
  lr: number;
  /** Steps taken so far. */
  readonly stepCount: number;
  /** Global L2 norm of the last step's gradients before clipping (NaN when clipping is off). */
  readonly lastGradNorm: number;
  /** Update the bound parameters in place from same-named, same-length gradients. */
  step(grads: ParamSet): void;
  /** Re-point the optimizer at new arrays with the same names and lengths (state is kept). */
  bind(params: ParamSet): void;
  /** A copy of the state for checkpoints. */
  state(): OptimizerState;
  /** Restore a state produced by {@link state} (same kind, names, lengths). */
  loadState(s: OptimizerState): void;
}

function entriesOf(set: ParamSet): [string, Float32Array][] {
  return set instanceof Map ? [...(set as ReadonlyMap<string, Float32Array>).entries()] : Object.entries(set as Record<string, Float32Array>);
}

function getFrom(set: ParamSet, name: string): Float32Array | undefined {
  return set instanceof Map ? (set as ReadonlyMap<string, Float32Array>).get(name) : (set as Record<string, Float32Array>)[name];
}

function sizeOf(set: ParamSet): number {
  return set instanceof Map ? (set as ReadonlyMap<string, Float32Array>).size : Object.keys(set).length;
}

function checkNumber(name: string, v: number, lo: number, hi = Infinity, loOpen = false, hiOpen = false): void {
  const ok = Number.isFinite(v) && (loOpen ? v > lo : v >= lo) && (hiOpen ? v < hi : v <= hi);
  if (!ok) {
    throw new OptimizerError(`${name} must be in ${loOpen ? '(' : '['}${lo}, ${hi}${hiOpen ? ')' : ']'}, got ${v}`);
  }
}

/** Options shared by both optimizers. */
export interface ClipOptions {
  /**
   * Clip gradients by their global L2 norm over all parameters before the update (PyTorch's
   * `clip_grad_norm_`: scale = maxGradNorm / (norm + 1e-6) when that is < 1). Gradients are not modified;
   * the scale is applied inside the update. A non-finite norm throws {@link OptimizerError} before any
   * parameter changes. Default: off.
   */
  maxGradNorm?: number;
}

abstract class BaseOptimizer implements Optimizer {
  lr: number;
  protected readonly names: string[];
  protected readonly sizes: number[];
  protected params: Float32Array[];
  /** Gradient arrays of the current step, looked up once per step (array reused, no allocation). */
  protected readonly gradsScratch: Float32Array[];
  protected steps = 0;
  protected maxGradNorm: number | null;
  private gradNorm = NaN;

  constructor(params: ParamSet, lr: number, clip: ClipOptions) {
    checkNumber('lr', lr, 0);
    if (clip.maxGradNorm !== undefined) checkNumber('maxGradNorm', clip.maxGradNorm, 0, Infinity, true);
    this.lr = lr;
    this.maxGradNorm = clip.maxGradNorm ?? null;
    const entries = entriesOf(params);
    if (entries.length === 0) throw new OptimizerError('no parameters to optimize');
    this.names = entries.map(([n]) => n);
    this.sizes = entries.map(([n, a]) => {
      if (!(a instanceof Float32Array)) throw new OptimizerError(`parameter '${n}' is not a Float32Array`);
      return a.length;
    });
    this.params = entries.map(([, a]) => a);
    this.gradsScratch = new Array<Float32Array>(entries.length);
  }

  get stepCount(): number {
    return this.steps;
  }

  get lastGradNorm(): number {
    return this.gradNorm;
  }

  bind(params: ParamSet): void {
    if (sizeOf(params) !== this.names.length) throw new OptimizerError(`bind: expected ${this.names.length} parameters, got ${sizeOf(params)}`);
    const next = this.names.map((n, i) => {
      const a = getFrom(params, n);
      if (!(a instanceof Float32Array)) throw new OptimizerError(`bind: parameter '${n}' missing or not a Float32Array`);
      if (a.length !== this.sizes[i]) throw new OptimizerError(`bind: parameter '${n}' has ${a.length} elements, expected ${this.sizes[i]}`);
      return a;
    });
    this.params = next;
  }

  /** Look up and validate this step's gradients; returns the clip scale (1 when not clipping). */
  protected gatherGrads(grads: ParamSet): number {
    const count = this.names.length;
    if (sizeOf(grads) !== count) throw new OptimizerError(`expected gradients for ${count} parameters, got ${sizeOf(grads)}`);
    for (let i = 0; i < count; i++) {
      const g = getFrom(grads, this.names[i]);
      if (g === undefined) throw new OptimizerError(`no gradient for parameter '${this.names[i]}'`);
      if (g.length !== this.sizes[i]) {
        throw new OptimizerError(`gradient '${this.names[i]}' has ${g.length} elements, parameter has ${this.sizes[i]}`);
      }
      this.gradsScratch[i] = g;
    }
    if (this.maxGradNorm === null) {
      this.gradNorm = NaN;
      return 1;
    }
    let sq = 0;
    for (let i = 0; i < count; i++) {
      const g = this.gradsScratch[i];
      for (let j = 0; j < g.length; j++) sq += g[j] * g[j];
    }
    const norm = Math.sqrt(sq);
    this.gradNorm = norm;
    if (!Number.isFinite(norm)) throw new OptimizerError(`gradient norm is ${norm}: refusing to step (check the loss for NaN/Inf)`);
    const coef = this.maxGradNorm / (norm + 1e-6);
    return coef < 1 ? coef : 1;
  }

  abstract step(grads: ParamSet): void;
  abstract state(): OptimizerState;
  abstract loadState(s: OptimizerState): void;

  protected checkStateShape(s: OptimizerState, kind: OptimizerState['kind'], slots: readonly string[]): void {
    if (s === null || typeof s !== 'object') throw new OptimizerError('optimizer state must be an object');
    if (s.kind !== kind) throw new OptimizerError(`optimizer state is for '${String(s.kind)}', this optimizer is '${kind}'`);
    if (!Number.isInteger(s.step) || s.step < 0) throw new OptimizerError(`optimizer state step ${String(s.step)} is not a non-negative integer`);
    if (!Array.isArray(s.params) || s.params.length !== this.names.length || s.params.some((n, i) => n !== this.names[i])) {
      throw new OptimizerError(`optimizer state parameters [${String(s.params)}] do not match [${this.names.join(', ')}]`);
    }
    if (s.buffers === null || typeof s.buffers !== 'object') throw new OptimizerError('optimizer state has no buffers');
    for (const slot of slots) {
      this.names.forEach((n, i) => {
        const b = s.buffers[`${slot}:${n}`];
        if (!(b instanceof Float32Array) || b.length !== this.sizes[i]) {
          throw new OptimizerError(`optimizer state buffer '${slot}:${n}' missing or not ${this.sizes[i]} float32 values`);
        }
      });
    }
  }
}

/** Options of {@link AdamW}; defaults are PyTorch's `torch.optim.AdamW`. */
export interface AdamWOptions extends ClipOptions {
  /** Learning rate (default 1e-3). */
  lr?: number;
  /** Coefficients of the running averages of the gradient and its square (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Added to the denominator for numerical stability (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay coefficient (default 0.01). */
  weightDecay?: number;
}

/**
 * AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") with PyTorch's update rule:
 * ```
 * t += 1
 * p   *= 1 - lr * wd
 * m    = b1 * m + (1 - b1) * g
 * v    = b2 * v + (1 - b2) * g^2
 * p   -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * ```
 * Moments are float32 (as in PyTorch); scalar factors are computed in float64. No allocation per step.
 */
export class AdamW extends BaseOptimizer {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  private readonly expAvg: Float32Array[];
  private readonly expAvgSq: Float32Array[];

  constructor(params: ParamSet, opts: AdamWOptions = {}) {
    super(params, opts.lr ?? 1e-3, opts);
    const [b1, b2] = opts.betas ?? [0.9, 0.999];
    checkNumber('beta1', b1, 0, 1, false, true);
    checkNumber('beta2', b2, 0, 1, false, true);
    this.beta1 = b1;
    this.beta2 = b2;
    this.eps = opts.eps ?? 1e-8;
    checkNumber('eps', this.eps, 0);
    this.weightDecay = opts.weightDecay ?? 0.01;
    checkNumber('weightDecay', this.weightDecay, 0);
    this.expAvg = this.sizes.map((n) => new Float32Array(n));
    this.expAvgSq = this.sizes.map((n) => new Float32Array(n));
  }

  step(grads: ParamSet): void {
    const scale = this.gatherGrads(grads);
    const t = ++this.steps;
    const { lr, beta1: b1, beta2: b2, eps } = this;
    const decay = 1 - lr * this.weightDecay;
    const stepSize = lr / (1 - Math.pow(b1, t));
    const bc2Sqrt = Math.sqrt(1 - Math.pow(b2, t));
    const c1 = 1 - b1;
    const c2 = 1 - b2;
    for (let i = 0; i < this.params.length; i++) {
      const p = this.params[i];
      const g = this.gradsScratch[i];
      const m = this.expAvg[i];
      const v = this.expAvgSq[i];
      for (let j = 0; j < p.length; j++) {
        const gj = g[j] * scale;
        const mj = (m[j] = b1 * m[j] + c1 * gj);
        const vj = (v[j] = b2 * v[j] + c2 * gj * gj);
        p[j] = p[j] * decay - (stepSize * mj) / (Math.sqrt(vj) / bc2Sqrt + eps);
      }
    }
  }

  state(): OptimizerState {
    const buffers: Record<string, Float32Array> = {};
    this.names.forEach((n, i) => {
      buffers[`exp_avg:${n}`] = this.expAvg[i].slice();
      buffers[`exp_avg_sq:${n}`] = this.expAvgSq[i].slice();
    });
    return {
      kind: 'adamw',
      step: this.steps,
      hyper: { lr: this.lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay, maxGradNorm: this.maxGradNorm },
      params: [...this.names],
      buffers,
    };
  }

  loadState(s: OptimizerState): void {
    this.checkStateShape(s, 'adamw', ['exp_avg', 'exp_avg_sq']);
    const h = s.hyper ?? {};
    const num = (k: string, cur: number): number => (typeof h[k] === 'number' ? (h[k] as number) : cur);
    const lr = num('lr', this.lr);
    const b1 = num('beta1', this.beta1);
    const b2 = num('beta2', this.beta2);
    const eps = num('eps', this.eps);
    const wd = num('weightDecay', this.weightDecay);
    checkNumber('lr', lr, 0);
    checkNumber('beta1', b1, 0, 1, false, true);
    checkNumber('beta2', b2, 0, 1, false, true);
    checkNumber('eps', eps, 0);
    checkNumber('weightDecay', wd, 0);
    Object.assign(this, { lr, beta1: b1, beta2: b2, eps, weightDecay: wd });
    if ('maxGradNorm' in h) this.maxGradNorm = typeof h.maxGradNorm === 'number' && h.maxGradNorm > 0 ? h.maxGradNorm : null;
    this.steps = s.step;
    this.names.forEach((n, i) => {
      this.expAvg[i].set(s.buffers[`exp_avg:${n}`]);
      this.expAvgSq[i].set(s.buffers[`exp_avg_sq:${n}`]);
    });
  }
}

/** Options of {@link SGD}; defaults are PyTorch's `torch.optim.SGD` except that lr is required there. */
export interface SGDOptions extends ClipOptions {
  /** Learning rate (default 0.01). */
  lr?: number;
  /** Momentum factor (default 0). */
  momentum?: number;
  /** Dampening for momentum (default 0). */
  dampening?: number;
  /** L2 penalty added to the gradient, coupled (PyTorch semantics; default 0). */
  weightDecay?: number;
  /** Nesterov momentum (default false; needs momentum > 0 and dampening 0). */
  nesterov?: boolean;
}

/**
 * SGD with momentum, PyTorch semantics:
 * ```
 * d = g + wd * p
 * b = d                                  (first step)
 * b = mu * b + (1 - dampening) * d       (later steps)
 * d = nesterov ? d + mu * b : b
 * p -= lr * d
 * ```
 * Without momentum the buffer is unused. No allocation per step.
 */
export class SGD extends BaseOptimizer {
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  private readonly buf: Float32Array[];

  constructor(params: ParamSet, opts: SGDOptions = {}) {
    super(params, opts.lr ?? 0.01, opts);
    this.momentum = opts.momentum ?? 0;
    this.dampening = opts.dampening ?? 0;
    this.weightDecay = opts.weightDecay ?? 0;
    this.nesterov = opts.nesterov ?? false;
    checkNumber('momentum', this.momentum, 0);
    checkNumber('dampening', this.dampening, 0, 1);
    checkNumber('weightDecay', this.weightDecay, 0);
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new OptimizerError('nesterov momentum requires momentum > 0 and dampening = 0');
    }
    this.buf = this.sizes.map((n) => new Float32Array(this.momentum !== 0 ? n : 0));
  }

  step(grads: ParamSet): void {
    const scale = this.gatherGrads(grads);
    const first = this.steps === 0;
    this.steps++;
    const { lr, momentum: mu, weightDecay: wd, nesterov } = this;
    const damp = 1 - this.dampening;
    for (let i = 0; i < this.params.length; i++) {
      const p = this.params[i];
      const g = this.gradsScratch[i];
      if (mu === 0) {
        for (let j = 0; j < p.length; j++) p[j] -= lr * (g[j] * scale + wd * p[j]);
        continue;
      }
      const b = this.buf[i];
      for (let j = 0; j < p.length; j++) {
        const d = g[j] * scale + wd * p[j];
        const bj = (b[j] = first ? d : mu * b[j] + damp * d);
        p[j] -= lr * (nesterov ? d + mu * bj : bj);
      }
    }
  }

  state(): OptimizerState {
    const buffers: Record<string, Float32Array> = {};
    if (this.momentum !== 0) this.names.forEach((n, i) => (buffers[`momentum_buffer:${n}`] = this.buf[i].slice()));
    return {
      kind: 'sgd',
      step: this.steps,
      hyper: {
        lr: this.lr,
        momentum: this.momentum,
        dampening: this.dampening,
        weightDecay: this.weightDecay,
        nesterov: this.nesterov,
        maxGradNorm: this.maxGradNorm,
      },
      params: [...this.names],
      buffers,
    };
  }

  loadState(s: OptimizerState): void {
    const h = s?.hyper ?? {};
    if (typeof h.momentum === 'number' && h.momentum !== this.momentum) {
      throw new OptimizerError(`optimizer state has momentum ${h.momentum}, this SGD was built with ${this.momentum}`);
    }
    this.checkStateShape(s, 'sgd', this.momentum !== 0 ? ['momentum_buffer'] : []);
    const lr = typeof h.lr === 'number' ? h.lr : this.lr;
    const wd = typeof h.weightDecay === 'number' ? h.weightDecay : this.weightDecay;
    const damp = typeof h.dampening === 'number' ? h.dampening : this.dampening;
    checkNumber('lr', lr, 0);
    checkNumber('weightDecay', wd, 0);
    checkNumber('dampening', damp, 0, 1);
    const nesterov = typeof h.nesterov === 'boolean' ? h.nesterov : this.nesterov;
    if (nesterov && damp !== 0) throw new OptimizerError('nesterov momentum requires dampening = 0');
    Object.assign(this, { lr, weightDecay: wd, dampening: damp, nesterov });
    if ('maxGradNorm' in h) this.maxGradNorm = typeof h.maxGradNorm === 'number' && h.maxGradNorm > 0 ? h.maxGradNorm : null;
    this.steps = s.step;
    if (this.momentum !== 0) this.names.forEach((n, i) => this.buf[i].set(s.buffers[`momentum_buffer:${n}`]));
  }
}

/** Global L2 norm of a set of gradients (float64 accumulation). */
export function globalNorm(grads: ParamSet): number {
  let sq = 0;
  for (const [, g] of entriesOf(grads)) for (let j = 0; j < g.length; j++) sq += g[j] * g[j];
  return Math.sqrt(sq);
}

/** The JSON part of an {@link OptimizerState} (everything except the buffers). */
export type OptimizerStateMeta = Omit<OptimizerState, 'buffers'>;

/**
 * Split an optimizer state into JSON metadata and named tensors `<prefix><slot>:<param>`, ready for a
 * checkpoint's metadata and tensor set.
 */
export function splitOptimizerState(s: OptimizerState, prefix = 'optim/'): { meta: OptimizerStateMeta; tensors: Map<string, Float32Array> } {
  const { buffers, ...meta } = s;
  const tensors = new Map<string, Float32Array>();
  for (const [k, v] of Object.entries(buffers)) tensors.set(prefix + k, v);
  return { meta: { ...meta, hyper: { ...meta.hyper }, params: [...meta.params] }, tensors };
}

/**
 * Reassemble an optimizer state from {@link splitOptimizerState}'s parts; `tensors` may be a checkpoint's
 * tensor map (entries with `.data`). Tensors without the prefix are ignored.
 */
export function joinOptimizerState(
  meta: OptimizerStateMeta,
  tensors: ReadonlyMap<string, Float32Array | { readonly data: Float32Array }>,
  prefix = 'optim/',
): OptimizerState {
  const buffers: Record<string, Float32Array> = {};
  for (const [k, v] of tensors) {
    if (k.startsWith(prefix)) buffers[k.slice(prefix.length)] = v instanceof Float32Array ? v : v.data;
  }
  return { ...meta, buffers };
}
