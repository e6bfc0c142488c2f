import { FmflError } from '../util/errors.ts';

/** Why a local inference call failed. */
export type InferErrorCode =
  /** The input (image file, JSON, pixel array) is malformed, the wrong size, or out of range. */
  | 'BAD_INPUT'
  /** An option (exit, budget, mode, peers) is out of range. */
  | 'BAD_OPTION'
  /** The checkpoint does not belong to the loaded backbone, or weights are misshapen. */
  | 'MODEL_MISMATCH'
  /** No peer answered validly in time and there was no local answer to fall back on. */
  | 'NO_ANSWER';

/** An inference call failed; `code` is `INFER_<reason>`, `reason` the bare reason. */
export class InferError extends FmflError {
  readonly reason: InferErrorCode;
  constructor(reason: InferErrorCode, message: string, options?: { cause?: unknown }) {
    super(`INFER_${reason}`, message, options);
    this.reason = reason;
  }
}
