/**
 * The one config schema (src/round/fl-config.ts): every key is a fmfl-node flag, a simulator flag and a profile key,
 * with one set of defaults; bad values name the flag and list the allowed values; README's table is generated from it.
 */
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, type Option } from 'commander';
import { addFederationOptions, flFlagsToConfig } from '../../src/cli/federate.ts';
import { withFlagTable } from '../../src/cli/flag-table.ts';
import { main } from '../../src/cli/main.ts';
import { helpText, typedFlag } from '../../src/cli/schema-options.ts';
import { parseNodeConfig, resolveNodeConfig } from '../../src/node/config.ts';
import { DEFAULT_AGGREGATOR } from '../../src/aggregate/index.ts';
import { DEFAULT_COMPRESSION, DEFAULT_ROUND_OPTIONS, DEFAULT_SECAGG_CLIP } from '../../src/round/index.ts';
import { checkFederationConfig, FederationConfigSchema, FL_DEFAULTS, FL_FAULT_KEYS, FL_KEYS, FL_KNOBS, roundOptionsOf } from '../../src/round/fl-config.ts';
import { AUTO_FULL_MAX_NODES, parseSimulatorArgs, resolveTopology, SIM_ASSIGNED_KEYS, SIM_FL_KEYS, simulatorProgram } from '../../scripts/lib/sim-config.ts';

const optionByFlag = (cmd: Command, flag: string): Option | undefined => cmd.options.find((o) => o.long === flag);

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (s) => void (out += s), stderr: (s) => void (err += s), shutdown: async () => 'test' });
  return { code, out, err };
}

test('every schema key is a profile key, a fmfl-node flag and a simulator flag, with the same help and default', (t) => {
  const schemaKeys = Object.keys(FederationConfigSchema.shape).sort();
  t.deepEqual(schemaKeys, [...FL_KEYS, ...Object.keys(FL_FAULT_KEYS)].sort());
  const cli = addFederationOptions(new Command());
  const sim = simulatorProgram();
  // The simulator sets exactly these per node; the fault keys are profile-only (the simulator's --fault writes them).
  t.deepEqual(Object.keys(SIM_ASSIGNED_KEYS).sort(), ['finalEval', 'minMembers', 'shard']);
  for (const key of FL_KEYS) {
    const flag = typedFlag(FL_KNOBS, key, FL_DEFAULTS);
    const c = optionByFlag(cli, flag);
    t.truthy(c, `fmfl-node has ${flag} for ${key}`);
    t.is(c?.description, helpText(FL_KNOBS, key, FL_DEFAULTS), `${flag}: help and default from the schema`);
    t.is(c?.defaultValue, undefined, `${flag}: no commander default (profile values must not be overridden)`);
    if (key in SIM_ASSIGNED_KEYS) {
      t.falsy(optionByFlag(sim, flag), `the simulator sets ${key} per node`);
      continue;
    }
    const s = optionByFlag(sim, flag);
    t.truthy(s, `the simulator has ${flag} for ${key}`);
    t.is(s?.description, c?.description, `${flag}: the same help and default in the simulator`);
    // A profile key: the schema accepts the default value under this key.
    t.true(FederationConfigSchema.safeParse({ [key]: FL_DEFAULTS[key] }).success, `profile key fl.${key}`);
  }
  t.is(SIM_FL_KEYS.length, FL_KEYS.length - 3);
});

test('one set of defaults: an empty profile, no flags and no simulator flags all give the schema defaults', (t) => {
  const profile = parseNodeConfig({ fl: {} });
  t.deepEqual(checkFederationConfig(profile.fl), FL_DEFAULTS);
  const cli = addFederationOptions(new Command()).exitOverride();
  cli.parse([], { from: 'user' });
  t.deepEqual(flFlagsToConfig(cli), {});
  const { fl } = parseSimulatorArgs([]);
  t.deepEqual(fl, {});
  t.deepEqual(checkFederationConfig(fl), FL_DEFAULTS);
  // Values that had drifted between the three copies.
  t.like(FL_DEFAULTS, { roundTimeoutMs: 60_000, leaderTimeoutMs: 15_000, brotli: true, topkScope: 'tensor', aggregator: 'fedavgm' });
  // The constants other modules use are the schema's.
  t.like(DEFAULT_ROUND_OPTIONS, { aggregator: FL_DEFAULTS.aggregator, roundTimeoutMs: FL_DEFAULTS.roundTimeoutMs, leaderTimeoutMs: FL_DEFAULTS.leaderTimeoutMs, gossipGamma: FL_DEFAULTS.gossipGamma, gossipMomentum: FL_DEFAULTS.gossipMomentum });
  t.like(DEFAULT_COMPRESSION, { topk: FL_DEFAULTS.topk, topkScope: FL_DEFAULTS.topkScope, bits: FL_DEFAULTS.bits, errorFeedback: FL_DEFAULTS.errorFeedback, downlinkBits: FL_DEFAULTS.downlinkBits, brotli: FL_DEFAULTS.brotli });
  t.is(DEFAULT_AGGREGATOR, FL_DEFAULTS.aggregator);
  t.is(DEFAULT_SECAGG_CLIP, FL_DEFAULTS.secaggClip);
});

test('precedence: CLI > profile > schema defaults', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fmfl-schema-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'p.json');
  await writeFile(file, JSON.stringify({ fl: { rank: 16, bits: 8, brotli: false } }));
  const cli = addFederationOptions(new Command()).exitOverride();
  cli.parse(['--rank', '4', '--alpha', 'iid'], { from: 'user' });
  const cfg = await resolveNodeConfig({ file, overrides: { fl: flFlagsToConfig(cli) } });
  const fl = checkFederationConfig(cfg.fl);
  t.like(fl, { rank: 4, alpha: null, bits: 8, brotli: false, localSteps: FL_DEFAULTS.localSteps });
});

test('a bad flag value names the flag and lists the allowed values (exit 2, before the mesh starts)', async (t) => {
  for (const [argv, flag, allowed] of [
    [['--bits', '3'], '--bits', '32, 16, 8, 4, 1'],
    [['--protocol', 'raft'], '--protocol', 'leader, gossip'],
    [['--topk-scope', 'layer'], '--topk-scope', 'tensor, global'],
    [['--lora-targets', 'q,zz'], '--lora-targets', 'q, k, v, proj, fc1, fc2'],
    [['--aggregator', 'mean'], '--aggregator', 'fedavgm'],
  ] as const) {
    const r = await run([...argv]);
    t.is(r.code, 2, argv.join(' '));
    t.true(r.err.includes(flag) && r.err.includes(allowed), `${argv.join(' ')}: ${r.err}`);
    t.notRegex(r.out, /listening/);
  }
  const r = await run(['--rounds', 'many']);
  t.is(r.code, 2);
  t.regex(r.err, /--rounds must be a number, got "many"/);
});

test('profile errors name the key and the flag; shard and backbone problems are found before the mesh starts', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fmfl-schema-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'p.json');
  await writeFile(file, JSON.stringify({ fl: { bits: 3 } }));
  let r = await run(['--config', file, '--state-dir', dir]);
  t.is(r.code, 2);
  t.regex(r.err, /--bits \/ fl\.bits: must be one of 32, 16, 8, 4, 1 \(got 3\)/);
  await writeFile(file, JSON.stringify({ fl: { nosuch: 1 } }));
  r = await run(['--config', file, '--state-dir', dir]);
  t.is(r.code, 2);
  t.regex(r.err, /nosuch/);
  r = await run(['--shard', '3/2', '--state-dir', dir]);
  t.is(r.code, 2);
  t.regex(r.err, /--shard 3\/2: needs 0 <= i < n/);
  r = await run(['--backbone', 'no-such-backbone', '--state-dir', dir]);
  t.is(r.code, 2);
  t.regex(r.err, /--backbone no-such-backbone: no such backbone .*allowed: .*vit-tiny-mnist-strong/);
  t.notRegex(r.out, /listening/);
  r = await run(['--data', join(dir, 'no-such-folder'), '--state-dir', dir]);
  t.is(r.code, 2);
  t.regex(r.err, /--data .*no-such-folder: no such dataset/);
  t.notRegex(r.out, /listening/);
  r = await run(['--dp-clip', '1', '--state-dir', dir]);
  t.is(r.code, 2);
  t.regex(r.err, /--dp-clip and --dp-noise/);
  r = await run(['--image-size', '32', '--state-dir', dir]);
  t.is(r.code, 2);
  t.regex(r.err, /backbone vit-tiny-mnist-strong takes 28x28 images with 1 channel/);
  t.notRegex(r.out, /listening/);
  // The round protocol's own rules (the registry's) are checked before the mesh starts too.
  r = await run(['--secagg', '--protocol', 'gossip', '--state-dir', dir]);
  t.is(r.code, 2);
  t.regex(r.err, /--protocol gossip: .*secagg.* needs the leader protocol/);
  t.notRegex(r.out, /listening/);
});

test('simulator flags: bad values are refused by flag; --backbone-reference fills the reference recipe', (t) => {
  let err = '';
  t.throws(() => parseSimulatorArgs(['--topology', 'mesh'], { writeErr: (s) => void (err += s) }));
  t.regex(err, /--topology mesh: must be one of auto, full, ring, star, line, random-k/);
  const { sim, fl } = parseSimulatorArgs(['--nodes', '3', '--backbone-reference', '--fault', 'kill:1@2', '--fault', 'drop:0.1', '--rounds', '4']);
  t.like(sim, { nodes: 3, fault: ['kill:1@2', 'drop:0.1'], mode: undefined, topology: 'auto', k: undefined });
  t.deepEqual(fl, { rounds: 4, backbone: 'vit-tiny-mnist', loraTargets: ['q', 'v'], loraAlpha: 16 });
});

test('--aggregator-inner: only under a server optimizer, only fedavg with secure aggregation; passed to the rule', (t) => {
  t.throws(() => checkFederationConfig({ aggregator: 'flexlora', aggregatorInner: 'hetlora-zero' }), { message: /--aggregator-inner hetlora-zero .* use it with --aggregator fedavgm/ });
  t.throws(() => checkFederationConfig({ aggregator: 'fedavgm', aggregatorInner: 'hetlora-zero', secagg: true }), { message: /inner rule must be fedavg/ });
  t.throws(() => checkFederationConfig({ aggregator: 'fedavgm', aggregatorInner: 'fedavgm' }), { message: /--aggregator-inner/ });
  const cfg = checkFederationConfig({ aggregator: 'fedavgm', aggregatorInner: 'hetlora-zero' });
  t.is(roundOptionsOf(cfg).aggregatorOptions?.inner, 'hetlora-zero');
  t.is(roundOptionsOf(checkFederationConfig({})).aggregatorOptions?.inner, undefined);
});

test('simulator --topology auto: a full mesh up to AUTO_FULL_MAX_NODES nodes, random-6 above; --k and a named topology win', (t) => {
  t.deepEqual(resolveTopology('auto', undefined, 8), { topology: 'full', k: 3 });
  t.deepEqual(resolveTopology('auto', undefined, AUTO_FULL_MAX_NODES), { topology: 'full', k: 3 });
  t.deepEqual(resolveTopology('auto', undefined, AUTO_FULL_MAX_NODES + 1), { topology: 'random-k', k: 6 });
  t.deepEqual(resolveTopology('auto', 4, 64), { topology: 'random-k', k: 4 });
  t.deepEqual(resolveTopology('full', undefined, 64), { topology: 'full', k: 3 });
  t.deepEqual(resolveTopology('random-k', undefined, 8), { topology: 'random-k', k: 3 });
  t.deepEqual(resolveTopology('ring', 5, 64), { topology: 'ring', k: 5 });
});

test('the profiles in nodes/ are valid, and their fl sections pass the full check', async (t) => {
  for (const f of readdirSync(new URL('../../nodes/', import.meta.url)).filter((n) => n.endsWith('.json'))) {
    const cfg = await resolveNodeConfig({ file: fileURLToPath(new URL(`../../nodes/${f}`, import.meta.url)) });
    t.notThrows(() => checkFederationConfig(cfg.fl ?? {}, { filesystem: true }), f);
  }
});

test("README's flag table is the one generated from the schema (npm run docs:flags)", (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  t.true(withFlagTable(readme) === readme, 'README flag table is out of date: run npm run docs:flags');
});
