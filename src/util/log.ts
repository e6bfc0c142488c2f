import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * The project's logger: pino. JSON lines with `json: true`; otherwise one human-readable line per record
 * (`HH:MM:SS level [name] msg key=value`), written synchronously to stderr so it never interleaves with
 * stdout output such as multiaddrs or result tables.
 */
export function createLogger(opts: { level?: LogLevel; json?: boolean; name?: string } = {}): Logger {
  const level: LevelWithSilent = opts.level ?? 'info';
  if (opts.json === true) {
    return pino({ level, name: opts.name, base: undefined }, pino.destination({ fd: 2, sync: true }));
  }
  const dest = {
    write(line: string): void {
      try {
        const rec = JSON.parse(line) as Record<string, unknown>;
        const { level: lv, time, msg, name, ...rest } = rec;
        const t = new Date(Number(time)).toISOString().slice(11, 19);
        const label = pino.levels.labels[Number(lv)] ?? String(lv);
        const extras = Object.entries(rest)
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join(' ');
        process.stderr.write(`${t} ${label.padEnd(5)} ${name !== undefined ? `[${String(name)}] ` : ''}${String(msg ?? '')}${extras ? ' ' + extras : ''}\n`);
      } catch {
        process.stderr.write(line);
      }
    },
  };
  return pino({ level, name: opts.name, base: undefined }, dest);
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
