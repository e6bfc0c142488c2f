/** Base class of every error fmfl throws on purpose. `code` is stable and machine-readable. */
export class FmflError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A user-supplied value (flag, config file, argument) is invalid. The message says how to fix it. */
export class ConfigError extends FmflError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFIG', message, options);
  }
}
