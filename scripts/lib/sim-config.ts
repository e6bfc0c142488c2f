/**
 * The simulator's flags: every federation setting of src/round/fl-config.ts (generated, same names, defaults and
 * help as `fmfl-node`), except the ones the simulator sets for each node, plus the small simulator-only schema below.
 */
import { Command } from 'commander';
import { z } from 'zod';
import { addSchemaOptions, typedValues } from '../../src/cli/schema-options.ts';
import { FL_DEFAULTS, FL_KEYS, FL_KNOBS, type FlKey, type KnobMeta } from '../../src/round/fl-config.ts';

/** Federation settings the simulator assigns per node instead of taking them from a flag. */
export const SIM_ASSIGNED_KEYS: Readonly<Partial<Record<FlKey, string>>> = {
  shard: 'node i of --nodes N gets shard i/N (i/--shard-count when given)',
  minMembers: 'every node waits for all --nodes',
  finalEval: 'every node evaluates its final model on the whole test split (the summary needs it)',
};

/** The federation settings that are simulator flags. */
export const SIM_FL_KEYS: readonly FlKey[] = FL_KEYS.filter((k) => !(k in SIM_ASSIGNED_KEYS));

const m = <T extends z.ZodType>(schema: T, meta: KnobMeta): T => schema.meta(meta as unknown as Record<string, unknown>) as T;

export const FAULT_RE = /^(kill-leader@\d+|kill:\d+@\d+|restart:\d+@\d+|drop:[\d.]+|partition@\d+|heal@\d+|byzantine:\d+:(scale|nan))$/;

/** `--topology auto`: a full mesh up to this many nodes; above, random-k (issue 17: 64 nodes in one process over a
 * full mesh, 2,016 links, did not reach round 1 on 2 cores; random-6 ran 3 rounds in 9 minutes). */
export const AUTO_FULL_MAX_NODES = 32;
/** Degree of `--topology random-k` when `--k` is not given, and of the random-k that `auto` picks. */
export const DEFAULT_RANDOM_K = 3;
export const AUTO_RANDOM_K = 6;

export type Topology = 'full' | 'ring' | 'star' | 'line' | 'random-k';

/** The topology a run uses: `auto` resolved by the node count, and the random-k degree (`--k` when given). */
export function resolveTopology(topology: Topology | 'auto', k: number | undefined, nodes: number): { topology: Topology; k: number } {
  if (topology !== 'auto') return { topology, k: k ?? DEFAULT_RANDOM_K };
  return nodes <= AUTO_FULL_MAX_NODES ? { topology: 'full', k: k ?? DEFAULT_RANDOM_K } : { topology: 'random-k', k: k ?? AUTO_RANDOM_K };
}

/** Simulator-only settings (no node has them). */
export const SIM_KNOBS = {
  nodes: m(z.number().int().min(1).max(256).default(8), { flag: '--nodes', arg: '<n>', help: 'number of nodes' }),
  mode: m(z.enum(['procs', 'inproc']).optional(), { flag: '--mode', arg: '<m>', defaultText: 'procs up to 16 nodes, else inproc', help: 'one fmfl-node process per node (up to 16), or all nodes in one process' }),
  transport: m(z.enum(['tcp', 'memory']).default('tcp'), { flag: '--transport', arg: '<t>', help: 'inproc mode: TCP loopback or the in-process memory transport' }),
  topology: m(z.enum(['auto', 'full', 'ring', 'star', 'line', 'random-k']).default('auto'), { flag: '--topology', arg: '<t>', help: `who dials whom (auto: full up to ${AUTO_FULL_MAX_NODES} nodes, random-k above)` }),
  k: m(z.number().int().min(1).max(256).optional(), { flag: '--k', arg: '<n>', defaultText: `${DEFAULT_RANDOM_K}, ${AUTO_RANDOM_K} when --topology auto picks random-k`, help: 'degree of random-k' }),
  backboneReference: m(z.boolean().default(false), { flag: '--backbone-reference', help: "the training-engine issue's reference recipe: --backbone vit-tiny-mnist --lora-targets q,v --lora-alpha 16" }),
  fault: m(z.array(z.string().regex(FAULT_RE, 'not a fault: kill-leader@R, kill:I@R, restart:I@R, drop:P, partition@R, heal@R, byzantine:I:scale|nan')).default([]), { flag: '--fault', arg: '<spec>', parse: 'repeat', defaultText: 'none', help: 'fault schedule entry (see scripts/simulate.ts)' }),
  fleet: m(z.string().regex(/^\d+:[a-z0-9-]+(,\d+:[a-z0-9-]+)*$/, 'a fleet looks like 4:edge,4:full').optional(), { flag: '--fleet', arg: '<spec>', defaultText: 'none', help: 'heterogeneous fleet, e.g. 4:edge,4:full: groups of nodes with the budgets (maxDepth, rank, globalRank) of nodes/fleet-<group>.json; sets --nodes' }),
  shardCount: m(z.number().int().min(1).max(100_000).optional(), { flag: '--shard-count', arg: '<n>', defaultText: '--nodes', help: 'split the data into this many shards and give node i shard i (e.g. 4 nodes on shards 0..3 of 8)' }),
  localOnly: m(z.boolean().default(false), { flag: '--local-only', help: 'baseline: every node trains alone for rounds x local-steps' }),
  out: m(z.string().min(1).default('out/sim'), { flag: '--out', arg: '<dir>', help: 'output folder' }),
  name: m(z.string().default(''), { flag: '--name', arg: '<s>', defaultText: 'from the settings', help: 'run name (subfolder of --out)' }),
  heartbeatMs: m(z.number().int().min(10).max(600_000).optional(), { flag: '--heartbeat-ms', arg: '<n>', defaultText: '1000 up to 16 nodes, then growing with N³ up to 60000 at 64', help: 'inproc mode: membership heartbeat period (expiry 6x)' }),
  memoryLatencyMs: m(z.number().min(0).max(1000).optional(), { flag: '--memory-latency-ms', arg: '<n>', defaultText: '1', help: 'inproc mode, memory transport: latency of every frame (0 starves the timers of a large run)' }),
  statusS: m(z.number().positive().default(30), { flag: '--status-s', arg: '<n>', help: 'inproc mode: seconds between status lines' }),
  progress: m(z.boolean().default(true), { flag: '--progress', help: 'a progress bar of the whole federation (rounds done over all nodes, ETA) on a terminal' }),
  verbose: m(z.boolean().default(false), { flag: '--verbose', help: 'log every node' }),
} as const;

export const SimConfigSchema = z.object(SIM_KNOBS).strict();
export type SimConfig = z.infer<typeof SimConfigSchema>;
export const SIM_DEFAULTS: Readonly<SimConfig> = Object.freeze(SimConfigSchema.parse({}));

/** The simulator's command line: simulator-only flags, then the federation flags. */
export function simulatorProgram(): Command {
  const cmd = new Command('simulate').description('multi-node federated-learning simulator (npm run simulate -- ...)').exitOverride();
  cmd.optionsGroup('Simulator:');
  addSchemaOptions(cmd, SIM_KNOBS, SIM_DEFAULTS);
  cmd.optionsGroup('Federation (the fmfl-node flags; every node gets them):');
  addSchemaOptions(cmd, FL_KNOBS, FL_DEFAULTS, SIM_FL_KEYS);
  return cmd;
}

/** Parse simulator arguments: the simulator settings (defaults filled) and the federation settings typed. */
export function parseSimulatorArgs(argv: string[], out?: { writeErr: (s: string) => void }): { sim: SimConfig; fl: Record<string, unknown> } {
  const cmd = simulatorProgram();
  if (out) cmd.configureOutput({ writeErr: out.writeErr });
  cmd.parse(argv, { from: 'user' });
  const sim = SimConfigSchema.parse(typedValues(cmd, SIM_KNOBS));
  const fl = typedValues(cmd, FL_KNOBS, SIM_FL_KEYS);
  if (sim.backboneReference) {
    fl.backbone ??= 'vit-tiny-mnist';
    fl.loraTargets ??= ['q', 'v'];
    fl.loraAlpha ??= 16;
  }
  return { sim, fl };
}
