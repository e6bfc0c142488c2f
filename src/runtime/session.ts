/**
 * The only module that imports onnxruntime-node: session creation, execution providers, thread settings and
 * typed feeds/fetches. Everything else passes plain typed arrays.
 */
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
  logger?: Logger;
}

export type FeedValue =
  | { data: Float32Array; dims: readonly number[] }
  | { data: Float64Array; dims: readonly number[] }
  | { data: BigInt64Array; dims: readonly number[] }
  | { data: Int32Array; dims: readonly number[] };

export type Fetched = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

/** One loaded ONNX model. */
export class Session {
  readonly provider: 'cpu' | 'cuda';
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private readonly inner: ort.InferenceSession;

  private constructor(inner: ort.InferenceSession, provider: 'cpu' | 'cuda') {
    this.inner = inner;
    this.provider = provider;
    this.inputNames = inner.inputNames;
    this.outputNames = inner.outputNames;
  }

  /** Load a model from bytes. */
  static async create(model: Uint8Array, opts: SessionOptions = {}): Promise<Session> {
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
    };
    if (want === 'cuda' || want === 'auto') {
      try {
        const s = await ort.InferenceSession.create(model, { ...base, executionProviders: ['cuda', 'cpu'] });
        return new Session(s, 'cuda');
      } catch (err) {
        if (want === 'cuda') {
          throw new RuntimeError(`the CUDA execution provider could not be loaded (${(err as Error).message}); run \`npm run setup:gpu\` on a machine with an NVIDIA GPU, or use --device cpu`, { cause: err });
        }
        warnOnce(opts.logger, `CUDA execution provider unavailable, using CPU (${firstLine((err as Error).message)})`);
      }
    }
    try {
      const s = await ort.InferenceSession.create(model, { ...base, ...CPU_ONLY, executionProviders: ['cpu'] });
      return new Session(s, 'cpu');
    } catch (err) {
      throw new RuntimeError(`onnxruntime rejected the model: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Run the model; returns the requested outputs (all by default) as typed arrays. */
  async run(feeds: Record<string, FeedValue>, fetches?: readonly string[]): Promise<Record<string, Fetched>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, v] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(v.data as Float32Array, v.dims as number[]);
    let out: ort.InferenceSession.ReturnType;
    try {
      out = fetches ? await this.inner.run(ortFeeds, fetches as string[]) : await this.inner.run(ortFeeds);
    } catch (err) {
      throw new RuntimeError(`onnxruntime run failed: ${(err as Error).message}`, { cause: err });
    }
    const res: Record<string, Fetched> = {};
    for (const [k, t] of Object.entries(out)) res[k] = t.data as Fetched;
    return res;
  }

  async release(): Promise<void> {
    await this.inner.release();
  }
}

/**
 * Session settings for the CPU provider only. onnxruntime's MatMulAddFusion turns MatMul + bias Add into Gemm;
 * on this project's machine (2-core Xeon, ORT 1.29) the Gemm kernel made the vit-tiny forward ~1 ms and the LoRA
 * train step ~2 ms slower at batch 64 than the MatMul kernel followed by a broadcast Add (interleaved A/B,
 * median of 200 runs; scripts/bench-train.ts shows the effect). ORT honours one optimizer name in this entry.
 */
const CPU_ONLY: ort.InferenceSession.SessionOptions = { extra: { optimization: { disable_specified_optimizers: 'MatMulAddFusion' } } };

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
