export { FmflError, ConfigError } from './errors.ts';
export { Rng } from './rng.ts';
export { atomicWriteFile } from './atomic.ts';
export { createLogger, silentLogger, LOG_LEVELS } from './log.ts';
export type { Logger, LogLevel } from './log.ts';
