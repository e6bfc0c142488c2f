/**
 * Learning-rate schedules for centralized recipes and local training: constant, or cosine decay to zero
 * (Loshchilov & Hutter, SGDR, without restarts) after an optional linear warm-up.
 */
import { ConfigError } from '../util/errors.ts';

export const LR_SCHEDULES = ['constant', 'cosine'] as const;
export type LrSchedule = (typeof LR_SCHEDULES)[number];

/**
 * The learning rate of step `step` (0-based) out of `total`: `base` for `constant`; for `cosine`,
 * base · (step + 1) / warmup during the first `warmup` steps, then base · ½(1 + cos(π · t)) with t going from 0
 * at the end of the warm-up to 1 at the last step.
 */
export function lrAt(schedule: LrSchedule, base: number, step: number, total: number, warmup = 0): number {
  if (!LR_SCHEDULES.includes(schedule)) throw new ConfigError(`schedule must be one of ${LR_SCHEDULES.join(', ')}`);
  if (!(base > 0) || !Number.isFinite(base)) throw new ConfigError('base learning rate must be a positive number');
  if (!Number.isInteger(total) || total < 1) throw new ConfigError('total steps must be a positive integer');
  if (!Number.isInteger(warmup) || warmup < 0 || warmup >= total) throw new ConfigError('warm-up steps must be an integer in [0, total)');
  if (!Number.isInteger(step) || step < 0) throw new ConfigError('step must be a non-negative integer');
  if (schedule === 'constant') return base;
  if (step < warmup) return (base * (step + 1)) / warmup;
  const span = total - warmup;
  const t = span <= 1 ? 1 : Math.min(1, (step - warmup) / (span - 1));
  return base * 0.5 * (1 + Math.cos(Math.PI * t));
}
