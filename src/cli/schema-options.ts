/**
 * Commander options generated from a zod schema whose keys carry {@link KnobMeta} (src/round/fl-config.ts): flag name,
 * argument, help, allowed values and default all come from the schema, so `fmfl-node` and the simulator cannot drift.
 * Values are read back only where the user typed them (commander's value source `cli`), which keeps the precedence
 * CLI > profile > schema defaults.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { z } from 'zod';
import { allowedValues, parseClassList, type KnobMeta } from '../round/fl-config.ts';
import { FmflError } from '../util/errors.ts';

/** A schema's keys (a zod object's shape). */
export type KnobShape = Readonly<Record<string, z.ZodType>>;

/** The metadata of one key, or a typed error naming the key that lacks it. */
export function metaOf(shape: KnobShape, key: string): KnobMeta {
  const m = shape[key]?.meta() as unknown as KnobMeta | undefined;
  if (!m || typeof m.flag !== 'string' || typeof m.help !== 'string') throw new FmflError('CONFIG', `schema key ${key} has no flag metadata`);
  return m;
}

function baseDef(schema: z.ZodType): { type: string } {
  let s = schema as unknown as { _zod: { def: { type: string; innerType?: unknown } } };
  while (['default', 'optional', 'nullable', 'prefault'].includes(s._zod.def.type)) s = s._zod.def.innerType as typeof s;
  return s._zod.def;
}

function isBoolean(schema: z.ZodType): boolean {
  return baseDef(schema).type === 'boolean';
}

/** The flag a user types for `key`: booleans that default to true are negated (`--brotli` → `--no-brotli`). */
export function typedFlag(shape: KnobShape, key: string, defaults: Readonly<Record<string, unknown>>): string {
  const m = metaOf(shape, key);
  return isBoolean(shape[key]) && defaults[key] === true ? m.flag.replace(/^--/, '--no-') : m.flag;
}

/** A default as help and README show it. */
export function defaultText(shape: KnobShape, key: string, defaults: Readonly<Record<string, unknown>>): string {
  const m = metaOf(shape, key);
  if (m.defaultText !== undefined) return m.defaultText;
  const v = defaults[key];
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  if (Array.isArray(v)) return v.join(',');
  if (v === undefined) return 'none';
  return String(v);
}

/** Help line of a key: the help, the allowed values, the default. */
export function helpText(shape: KnobShape, key: string, defaults: Readonly<Record<string, unknown>>): string {
  const m = metaOf(shape, key);
  const allowed = allowedValues(shape[key]);
  const parts = [allowed && !isBoolean(shape[key]) ? `one of ${allowed.join(', ')}` : '', `default ${defaultText(shape, key, defaults)}`].filter(Boolean);
  const negated = typedFlag(shape, key, defaults) !== m.flag;
  return `${negated ? 'turn off: ' : ''}${m.help} (${parts.join('; ')})`;
}

/**
 * Text of a flag to the key's value, validated by the key's own zod type.
 * @throws InvalidArgumentError (commander reports it with the flag; exit 2) listing the allowed values.
 */
export function parseFlagValue(shape: KnobShape, key: string, raw: string): unknown {
  const m = metaOf(shape, key);
  const schema = shape[key];
  const allowed = allowedValues(schema);
  let value: unknown = raw;
  try {
    if (m.parse === 'classes') value = parseClassList(raw);
    else if (m.parse === 'list') value = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
    else if (m.parse === 'alpha' && raw === 'iid') value = null;
    else {
      const t = baseDef(schema).type;
      const numeric = t === 'number' || (allowed !== undefined && allowed.every((v) => typeof v === 'number'));
      if (numeric) {
        const x = Number(raw);
        if (raw.trim() === '' || !Number.isFinite(x)) throw new InvalidArgumentError(`${m.flag} must be a number, got "${raw}"${allowed ? `; allowed: ${allowed.join(', ')}` : ''}`);
        value = x;
      }
    }
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw err;
    throw new InvalidArgumentError((err as Error).message);
  }
  const r = schema.safeParse(value);
  // Commander cannot store null (an argParser's null reads back as ''): `iid` stays text until typedValues.
  if (r.success && value === null && m.parse === 'alpha') return IID;
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new InvalidArgumentError(allowed ? `${m.flag} ${raw}: must be ${m.parse === 'list' ? 'a comma-separated list of' : 'one of'} ${allowed.join(', ')}` : `${m.flag} ${raw}: ${issue.message}`);
  }
  return r.data;
}

const IID = 'iid';

/** Commander options for every key of `shape` (no commander defaults: unset flags stay unset). */
export function schemaOptions(shape: KnobShape, defaults: Readonly<Record<string, unknown>>, keys: readonly string[] = Object.keys(shape)): Option[] {
  return keys.map((key) => {
    const m = metaOf(shape, key);
    const flag = typedFlag(shape, key, defaults);
    if (isBoolean(shape[key])) return new Option(flag, helpText(shape, key, defaults));
    if (m.parse === 'repeat') {
      return new Option(`${flag} ${m.arg ?? '<value>'}`, `${helpText(shape, key, defaults)}; repeatable`).argParser((raw: string, prev: unknown) => {
        const all = [...((prev as string[] | undefined) ?? []), raw];
        const r = shape[key].safeParse(all);
        if (!r.success) throw new InvalidArgumentError(`${m.flag} ${raw}: ${r.error.issues[0].message}`);
        return all;
      });
    }
    return new Option(`${flag} ${m.arg ?? '<value>'}`, helpText(shape, key, defaults)).argParser((raw: string) => parseFlagValue(shape, key, raw));
  });
}

/** Add the options of {@link schemaOptions} to `cmd`. */
export function addSchemaOptions(cmd: Command, shape: KnobShape, defaults: Readonly<Record<string, unknown>>, keys?: readonly string[]): Command {
  for (const o of schemaOptions(shape, defaults, keys)) cmd.addOption(o);
  return cmd;
}

/** Commander's attribute name of a flag (`--no-brotli` → `brotli`, `--local-steps` → `localSteps`). */
function attrOf(flag: string): string {
  return flag.replace(/^--(no-)?/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** The values of `shape`'s keys the user typed on the command line, by schema key. */
export function typedValues(cmd: Command, shape: KnobShape, keys: readonly string[] = Object.keys(shape)): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const opts = cmd.opts<Record<string, unknown>>();
  for (const key of keys) {
    const attr = attrOf(metaOf(shape, key).flag);
    if (cmd.getOptionValueSource(attr) === 'cli') out[key] = metaOf(shape, key).parse === 'alpha' && opts[attr] === IID ? null : opts[attr];
  }
  return out;
}
