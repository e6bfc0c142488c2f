/**
 * The only module that imports onnxruntime-node: session creation, execution providers, thread settings and
 * typed feeds/fetches. Everything else passes plain typed arrays.
 */
import { createHash } from 'node:crypto';
import * as ort from 'onnxruntime-node';
import { FmflError } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';

export type ExecutionProvider = 'cpu' | 'cuda' | 'auto';
export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'cuda', 'auto'];

/** onnxruntime refused a model or a run. */
export class RuntimeError extends FmflError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('RUNTIME', message, options);
  }
}

export interface SessionOptions {
  /** `cpu` (default), `cuda`, or `auto` (CUDA when its provider loads, else CPU with one log line). */
  provider?: ExecutionProvider;
  /** Intra-op threads; default: FMFL_ORT_THREADS or the machine's core count. */
  threads?: number;
  /** Graph optimizations ('all' by default). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Let onnxruntime's intra-op threads spin-wait for work (its own default) instead of sleeping; default: off,
   * unless FMFL_ORT_SPIN=1 (see `spinDefault`).
   */
  spin?: boolean;
  logger?: Logger;
}

export type FeedValue =
  | { data: Float32Array; dims: readonly number[] }
  | { data: Float64Array; dims: readonly number[] }
  | { data: BigInt64Array; dims: readonly number[] }
  | { data: Int32Array; dims: readonly number[] };

export type Fetched = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

/** An onnxruntime session and the handles using it (one unless it is shared). */
interface Loaded {
  inner: ort.InferenceSession;
  provider: 'cpu' | 'cuda';
  refs: number;
  /** Tail of this session's run queue: runs are serialized per session, never concurrent. */
  tail: Promise<unknown>;
  /** Pool key when shared. */
  key?: string;
}

/** Shared sessions of this process by model digest and session settings (Session.shared). */
const pool = new Map<string, Promise<Loaded>>();

/**
 * One loaded ONNX model. `Session.create` loads a private session; `Session.shared` hands out a handle on a
 * process-wide session per identical model and settings (nodes of one process whose graphs are byte-identical,
 * e.g. every in-process node of a simulation, then share one session and its memory arena). Runs on one
 * underlying session are serialized in call order.
 */
export class Session {
  readonly provider: 'cpu' | 'cuda';
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private readonly loaded: Loaded;
  private released = false;

  private constructor(loaded: Loaded) {
    this.loaded = loaded;
    this.provider = loaded.provider;
    this.inputNames = loaded.inner.inputNames;
    this.outputNames = loaded.inner.outputNames;
  }

  /** Load a model from bytes into a session of its own. */
  static async create(model: Uint8Array, opts: SessionOptions = {}): Promise<Session> {
    const { inner, provider } = await load(model, opts);
    return new Session({ inner, provider, refs: 1, tail: Promise.resolve() });
  }

  /**
   * A handle on the process-wide session of this model (same bytes, provider, threads and optimization level),
   * loading it on first use. Each handle must be released; the session is freed with the last one.
   */
  static async shared(model: Uint8Array, opts: SessionOptions = {}): Promise<Session> {
    const key = [createHash('sha256').update(model).digest('hex'), opts.provider ?? 'cpu', opts.threads ?? defaultThreads(), opts.optimization ?? 'all', opts.spin ?? spinDefault()].join('|');
    let p = pool.get(key);
    if (p === undefined) {
      p = load(model, opts).then(({ inner, provider }) => ({ inner, provider, refs: 0, tail: Promise.resolve(), key }));
      pool.set(key, p);
      p.catch(() => pool.delete(key));
    }
    const loaded = await p;
    loaded.refs++;
    return new Session(loaded);
  }

  /** Number of distinct shared sessions alive in this process (diagnostics, tests). */
  static sharedCount(): number {
    return pool.size;
  }

  /** Run the model; returns the requested outputs (all by default) as typed arrays. */
  async run(feeds: Record<string, FeedValue>, fetches?: readonly string[]): Promise<Record<string, Fetched>> {
    if (this.released) throw new RuntimeError('run on a released session');
    const l = this.loaded;
    const job = l.tail.then(() => this.runNow(feeds, fetches));
    l.tail = job.catch(() => undefined);
    return job;
  }

  private async runNow(feeds: Record<string, FeedValue>, fetches?: readonly string[]): Promise<Record<string, Fetched>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, v] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(v.data as Float32Array, v.dims as number[]);
    let out: ort.InferenceSession.ReturnType;
    const inner = this.loaded.inner;
    try {
      out = fetches ? await inner.run(ortFeeds, fetches as string[]) : await inner.run(ortFeeds);
    } catch (err) {
      throw new RuntimeError(`onnxruntime run failed: ${(err as Error).message}`, { cause: err });
    }
    const res: Record<string, Fetched> = {};
    for (const [k, t] of Object.entries(out)) res[k] = t.data as Fetched;
    return res;
  }

  /** Release this handle; the session itself goes with its last handle (after the runs queued on it). Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const l = this.loaded;
    if (--l.refs > 0) return;
    if (l.key !== undefined) pool.delete(l.key);
    await l.tail;
    await l.inner.release();
  }
}

/** Why the CUDA provider failed to load in this process (null: not tried, or it loaded). */
let cudaFailure: string | null = null;

async function load(model: Uint8Array, opts: SessionOptions): Promise<{ inner: ort.InferenceSession; provider: 'cpu' | 'cuda' }> {
  const want = opts.provider ?? 'cpu';
  const threads = opts.threads ?? defaultThreads();
  const base: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: opts.optimization ?? 'all',
    enableCpuMemArena: true,
    enableMemPattern: true,
    logSeverityLevel: 3,
    extra: { session: { intra_op: { allow_spinning: (opts.spin ?? spinDefault()) ? '1' : '0' } } },
  };
  // `auto` tries CUDA once per process: after a failure every later session goes straight to the CPU (each failed
  // attempt costs time and makes onnxruntime print its own error block).
  if (want === 'cuda' || (want === 'auto' && cudaFailure === null)) {
    try {
      return { inner: await ort.InferenceSession.create(model, { ...base, executionProviders: ['cuda', 'cpu'] }), provider: 'cuda' };
    } catch (err) {
      cudaFailure = firstLine((err as Error).message);
      if (want === 'cuda') {
        throw new RuntimeError(`the CUDA execution provider could not be loaded (${(err as Error).message}); run \`npm run setup:gpu\` on a machine with an NVIDIA GPU, or use --device cpu`, { cause: err });
      }
      warnOnce(opts.logger, `CUDA execution provider unavailable, using CPU (${firstLine((err as Error).message)})`);
    }
  }
  try {
    return { inner: await ort.InferenceSession.create(model, { ...base, extra: { ...base.extra, ...CPU_ONLY.extra }, executionProviders: ['cpu'] }), provider: 'cpu' };
  } catch (err) {
    throw new RuntimeError(`onnxruntime rejected the model: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Session settings for the CPU provider only. onnxruntime's MatMulAddFusion turns MatMul + bias Add into Gemm;
 * on this project's machine (2-core Xeon, ORT 1.29) the Gemm kernel made the vit-tiny forward ~1 ms and the LoRA
 * train step ~2 ms slower at batch 64 than the MatMul kernel followed by a broadcast Add (interleaved A/B,
 * median of 200 runs; scripts/bench-train.ts shows the effect). ORT honours one optimizer name in this entry.
 */
const CPU_ONLY: ort.InferenceSession.SessionOptions = { extra: { optimization: { disable_specified_optimizers: 'MatMulAddFusion' } } };

/**
 * Whether intra-op threads spin-wait by default: only with env FMFL_ORT_SPIN=1. onnxruntime's own default (spin)
 * keeps every session's threads busy-waiting between parallel sections; on this project's loaded 2-vCPU machine
 * (other jobs, several sessions per process, a PyTorch process beside it) sleeping made the LoRA steps 1.6-3.8x
 * faster (imported ResNet 7.6 vs 15-29 ms, vit-tiny 101-206 vs 285-367 ms; README "Threads that sleep"). On a quiet
 * machine spinning can be faster (ResNet 6.0 vs 7.5 ms at load 2; vit-tiny 35% when it was measured idle): set
 * FMFL_ORT_SPIN=1 there.
 */
export function spinDefault(): boolean {
  return process.env.FMFL_ORT_SPIN === '1';
}

/** ORT intra-op threads: env FMFL_ORT_THREADS if set, else the number of cores. */
export function defaultThreads(): number {
  const env = Number(process.env.FMFL_ORT_THREADS);
  if (Number.isInteger(env) && env > 0) return env;
  return Math.max(1, (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 2);
}

let warned = false;
function warnOnce(logger: Logger | undefined, msg: string): void {
  if (warned) return;
  warned = true;
  if (logger) logger.warn(msg);
  else process.stderr.write(`fmfl: ${msg}\n`);
}

function firstLine(s: string): string {
  return s.split('\n')[0].slice(0, 200);
}

/** The onnxruntime version in use. */
export function ortVersion(): string {
  return ort.env.versions.common;
}
