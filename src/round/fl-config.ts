/**
 * The one schema of a node's federated-learning settings: the keys of a profile's `"fl"` object, the `fmfl-node`
 * federation flags and the simulator's flags are all generated from it (src/cli/schema-options.ts), and so are the
 * defaults and README's flag table (`npm run docs:flags`). Each key carries its CLI flag, argument name and help text
 * in its zod metadata; allowed values come from the zod type itself.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { AGGREGATOR_NAMES, DEFAULT_AGGREGATOR, DEFAULT_SERVER_MOMENTUM, INNER_RULE_NAMES, SERVER_OPTIMIZER_RULES } from '../aggregate/index.ts';
import { DEFAULT_BACKBONE, MODELS_DIR } from '../model/backbone.ts';
import { LORA_TARGETS } from '../model/vit.ts';
import { LR_SCHEDULES } from '../train/schedule.ts';
import { MAX_PERSONAL_LAMBDA, PERSONAL_KINDS } from '../train/personal.ts';
import { resolveDataSource } from '../data/index.ts';
import { ConfigError } from '../util/errors.ts';
import type { RoundOptions } from './types.ts';

/** Names of the round protocols. */
export const PROTOCOL_NAMES = ['leader', 'gossip'] as const;
export type ProtocolName = (typeof PROTOCOL_NAMES)[number];

/** Gossip's default heavy-ball momentum: the leader's FedAvgM default, so both protocols follow one recursion. */
export const DEFAULT_GOSSIP_MOMENTUM = DEFAULT_SERVER_MOMENTUM;

/** How a flag's text becomes a value, where the zod type alone does not say it. */
/** `repeat`: the flag may be given several times (`--fault a --fault b`), collecting an array. */
export type KnobParse = 'list' | 'classes' | 'alpha' | 'repeat';

/** What every schema key declares about its command-line face. */
export interface KnobMeta {
  /** The flag, e.g. `--rank` (booleans that default to true are negated on the command line: `--no-brotli`). */
  flag: string;
  /** Placeholder of the flag's argument, e.g. `<n>` (absent for booleans). */
  arg?: string;
  /** One-line help (CLI `--help`, simulator `--help`, README table). */
  help: string;
  /** How the default reads in help where it is not a fixed value (e.g. "the backbone's"). */
  defaultText?: string;
  parse?: KnobParse;
}

/** A zod type carrying its command-line face ({@link KnobMeta}); src/cli/schema-options.ts makes the flag from it. */
export const knob = <T extends z.ZodType>(schema: T, meta: KnobMeta): T => schema.meta(meta as unknown as Record<string, unknown>) as T;

const classNames = z.array(z.string().min(1).max(128).regex(/^[^,\n\r]+$/, 'class names hold no commas or line breaks')).min(1).max(256);
const bitsValues = z.union([z.literal(32), z.literal(16), z.literal(8), z.literal(4), z.literal(1)]);
const downlinkValues = z.union([z.literal(32), z.literal(16), z.literal(8), z.literal(4), z.literal(1)]);
const seedInt = z.number().int().min(0).max(2 ** 31);

/** Every federated-learning setting of a node with its default, its flag and its help. */
export const FL_KNOBS = {
  // data
  dataset: knob(z.string().min(1).max(4096).default('fashion-mnist'), { flag: '--data', arg: '<name|dir|csv>', help: 'training data: fashion-mnist | mnist, a folder of <class>/<image> files (png, jpg, webp, tif, dcm; optional train/ and test/ inside), or a CSV of path,label[,train|test] rows' }),
  classes: knob(classNames.optional(), { flag: '--classes', arg: '<list|file>', parse: 'classes', defaultText: "the data's own", help: "the federation's label set in label order: comma-separated names or a classes.txt (one per line); every member must declare the same" }),
  imageSize: knob(z.number().int().min(4).max(512).optional(), { flag: '--image-size', arg: '<n>', defaultText: "the backbone's", help: "input size the node expects, checked against the backbone's input spec" }),
  channels: knob(z.union([z.literal(1), z.literal(3)]).optional(), { flag: '--channels', arg: '<n>', defaultText: "the backbone's", help: "input channels the node expects, checked against the backbone's" }),
  testFraction: knob(z.number().gt(0).lt(1).default(0.2), { flag: '--test-fraction', arg: '<x>', help: 'share of each class held out for testing when the data has no test/ folder (seeded, stratified)' }),
  shard: knob(z.string().regex(/^\d+\/\d+$/, 'must look like i/n with 0 <= i < n, e.g. 3/8').refine((s) => { const [i, n] = s.split('/').map(Number); return n >= 1 && i < n; }, 'needs 0 <= i < n, e.g. 3/8').default('0/1'), { flag: '--shard', arg: '<i/n>', help: "this node's shard of the train split, 0-based (e.g. 3/8)" }),
  alpha: knob(z.number().positive().max(1e6).nullable().default(0.5), { flag: '--alpha', arg: '<x|iid>', parse: 'alpha', help: 'Dirichlet label-skew concentration of the split, or iid (null in a profile)' }),
  partitionSeed: knob(seedInt.default(42), { flag: '--partition-seed', arg: '<n>', help: 'seed of the label split; every member must use the same one to get disjoint shards' }),
  // training
  protocol: knob(z.enum(PROTOCOL_NAMES).default('leader'), { flag: '--protocol', arg: '<p>', help: 'round protocol: rotating round-leader, or gossip averaging of replicated public models (CHOCO-style)' }),
  rounds: knob(z.number().int().min(1).max(100_000).default(30), { flag: '--rounds', arg: '<n>', help: 'rounds to run' }),
  localSteps: knob(z.number().int().min(1).max(1_000_000).default(50), { flag: '--local-steps', arg: '<n>', help: 'local AdamW steps per round' }),
  localStepsAuto: knob(z.boolean().default(false), { flag: '--local-steps-auto', help: "slow members train fewer local steps: --local-steps x own measured throughput / the fastest member's, at least a quarter (README: Heterogeneous fleets)" }),
  budget: knob(z.enum(['fixed', 'auto']).default('fixed'), { flag: '--budget', arg: '<b>', help: 'fixed: train --max-depth and --rank as given; auto: the deepest depth <= --max-depth and the largest rank <= --rank whose local training, predicted from the speed measured at start, fits --round-seconds (README: Heterogeneous fleets)' }),
  roundSeconds: knob(z.number().positive().max(86_400).optional(), { flag: '--round-seconds', arg: '<s>', defaultText: 'none (--budget auto needs it)', help: '--budget auto: target seconds of local training per round' }),
  batch: knob(z.number().int().min(1).max(4096).default(64), { flag: '--batch', arg: '<n>', help: 'batch size' }),
  lr: knob(z.number().positive().max(10).default(1e-3), { flag: '--lr', arg: '<x>', help: 'AdamW learning rate' }),
  lrSchedule: knob(z.enum(LR_SCHEDULES).default('constant'), { flag: '--lr-schedule', arg: '<s>', help: 'local learning-rate schedule over all rounds (cosine: decays to zero at the last step of the last round)' }),
  weightDecay: knob(z.number().min(0).max(1).default(0.01), { flag: '--weight-decay', arg: '<x>', help: 'AdamW weight decay' }),
  logitAdjust: knob(z.boolean().default(false), { flag: '--logit-adjust', help: 'against label skew: local training adds the log of the local label prior to the logits in the loss (balanced softmax, FedLC)' }),
  protoWeight: knob(z.number().min(0).max(100).default(0), { flag: '--proto-weight', arg: '<x>', help: 'weight of the prototype loss term' }),
  distill: knob(z.number().min(0).max(100).default(0), { flag: '--distill', arg: '<w>', help: "mutual self-distillation between the exits a node trains (DepthFL): each exit also learns the KL to the other exits' softened, detached predictions, with this weight (0: off; 1: DepthFL's)" }),
  distillTemperature: knob(z.number().positive().max(100).default(1), { flag: '--distill-temperature', arg: '<t>', help: 'temperature of --distill (softmax(logits / t), the term scaled by t^2; 1: DepthFL)' }),
  prototypeEvery: knob(z.number().int().min(0).max(100_000).default(0), { flag: '--prototype-every', arg: '<n>', help: 'send prototype statistics every n rounds (0: last round only; every round when --proto-weight > 0)' }),
  prototypeSamples: knob(z.number().int().min(1).max(1_000_000).default(1000), { flag: '--prototype-samples', arg: '<n>', help: 'shard samples used to compute local prototype statistics' }),
  seed: knob(seedInt.optional(), { flag: '--seed', arg: '<n>', defaultText: 'from the shard', help: "seed of this node's minibatch order and quantization noise" }),
  personal: knob(z.enum(PERSONAL_KINDS).default('none'), { flag: '--personal', arg: '<kind>', help: "personal adapters: head keeps private exit heads that never leave the node, trained each round on the node's shard on top of the new global model (FedRep's head phase); lora keeps a private LoRA adapter and exit heads, trained each round with Ditto's proximal term to the new global model; both report personal accuracy on the node's own test split" }),
  personalSteps: knob(z.number().int().min(1).max(1_000_000).default(25), { flag: '--personal-steps', arg: '<n>', help: 'personal adapters: local steps of the personal phase per round' }),
  personalLambda: knob(z.number().min(0).max(MAX_PERSONAL_LAMBDA).default(0.1), { flag: '--personal-lambda', arg: '<λ>', help: "--personal lora: Ditto's proximal weight λ (λ/2·||v − w||² to the global model w; 0 lets the personal adapter move freely, large pins it at w)" }),
  // model
  backbone: knob(z.string().min(1).max(128).default(DEFAULT_BACKBONE), { flag: '--backbone', arg: '<name>', help: 'backbone in models/ (vit-tiny-mnist is the reference recipe; vit-tiny-32-mnist takes 32x32 RGB; npm run pretrain makes others)' }),
  backboneDir: knob(z.string().min(1).optional(), { flag: '--backbone-dir', arg: '<dir>', defaultText: "the project's models/", help: 'folder holding the backbone' }),
  modelSeed: knob(seedInt.default(7), { flag: '--model-seed', arg: '<n>', help: 'seed of the initial LoRA and exit-head weights (the same on every member: global version 0)' }),
  trainable: knob(z.enum(['lora+heads', 'heads']).default('lora+heads'), { flag: '--trainable', arg: '<set>', help: 'what local training updates: LoRA adapters and exit heads, or the heads only' }),
  rank: knob(z.number().int().min(1).max(64).default(8), { flag: '--rank', arg: '<n>', help: 'LoRA rank' }),
  globalRank: knob(z.number().int().min(1).max(64).optional(), { flag: '--global-rank', arg: '<n>', defaultText: '--rank', help: "rank budgets: rank of the federation's global adapter, the same on every member; a node with a smaller --rank trains it truncated (mixed ranks need --aggregator hetlora-zero, hetlora-replicate or flexlora)" }),
  maxDepth: knob(z.number().int().min(1).max(1024).optional(), { flag: '--max-depth', arg: '<k>', defaultText: 'all blocks', help: 'depth budget: train and serve blocks 1..k and exits 1..k only; updates carry only those tensors' }),
  loraAlpha: knob(z.number().positive().max(4096).default(64), { flag: '--lora-alpha', arg: '<x>', help: 'LoRA alpha; scale alpha/r (64: scale 8 at r=8; the reference recipe uses 16)' }),
  loraTargets: knob(z.array(z.enum(LORA_TARGETS)).min(1).default([...LORA_TARGETS]), { flag: '--lora-targets', arg: '<list>', parse: 'list', help: 'projections with LoRA, comma-separated' }),
  // compression
  topk: knob(z.number().positive().max(1).default(1), { flag: '--topk', arg: '<x>', help: 'fraction of update entries sent (1 = dense)' }),
  topkScope: knob(z.enum(['tensor', 'global']).default('tensor'), { flag: '--topk-scope', arg: '<s>', help: 'top-k per tensor, or one magnitude threshold over all tensors (per tensor measured 2.6 points better on the 8-node reference run)' }),
  bits: knob(bitsValues.default(1), { flag: '--bits', arg: '<n>', help: 'bits per sent value (1: scaled sign, one mean-|x| scale per 1,024 values; best with dense updates and error feedback)' }),
  errorFeedback: knob(z.boolean().default(true), { flag: '--error-feedback', help: 'carry what compression dropped into the next round' }),
  downlinkBits: knob(downlinkValues.default(16), { flag: '--downlink-bits', arg: '<n>', help: 'bits of the encoded round step: 32, 16, 8, 4 or 1 (scaled sign; use with --downlink-error-feedback). Every member recomputes it bit for bit; it travels, over round.step, only to members that cannot recompute (off the --committee)' }),
  downlinkErrorFeedback: knob(z.boolean().default(false), { flag: '--downlink-error-feedback', help: 'leader: carry what the round step\'s encoding dropped into the next round\'s step; the residual is replicated server state (every verifying member computes it bit for bit; a member joining the committee pulls it, round.residual; protocols/round.md "Compressed downlink")' }),
  brotli: knob(z.boolean().default(true), { flag: '--brotli', help: 'brotli over each update payload, lossless, about 8% smaller' }),
  // aggregation
  aggregator: knob(z.enum(AGGREGATOR_NAMES as [string, ...string[]]).default(DEFAULT_AGGREGATOR), { flag: '--aggregator', arg: '<name>', help: 'aggregation rule (README: Aggregation)' }),
  aggregatorInner: knob(z.enum(INNER_RULE_NAMES as [string, ...string[]]).optional(), { flag: '--aggregator-inner', arg: '<rule>', defaultText: 'fedavg', help: `the rule whose averaged delta a server optimizer (${SERVER_OPTIMIZER_RULES.join(', ')}) steps on, e.g. hetlora-zero for mixed ranks; every member must use the same` }),
  tensorWeighting: knob(z.enum(['samples', 'depth']).default('samples'), { flag: '--tensor-weighting', arg: '<w>', help: "per-tensor weight of each update: its samples, or (depth budgets) its samples times the number of its exit losses the tensor was trained through (a shared shallow block follows the deep nodes more); every member must use the same; ignored with DP" }),
  serverLr: knob(z.number().positive().max(100).optional(), { flag: '--server-lr', arg: '<x>', defaultText: "the rule's own", help: 'server learning rate of fedavgm (1) and fedadam / fedyogi / fedadagrad (0.01)' }),
  serverMomentum: knob(z.number().min(0).lt(1).optional(), { flag: '--server-momentum', arg: '<x>', defaultText: String(DEFAULT_SERVER_MOMENTUM), help: 'fedavgm: server momentum in [0, 1)' }),
  serverLrDecay: knob(z.boolean().default(false), { flag: '--server-lr-decay', help: 'decay --server-lr over the rounds to 1 (cosine)' }),
  // round
  quorum: knob(z.number().gt(0).max(1).optional(), { flag: '--quorum', arg: '<x>', defaultText: 'a roster majority', help: 'leader: fewest contributions a round closes with, as a fraction of the roster' }),
  deadline: knob(z.enum(['adaptive', 'fixed']).default('adaptive'), { flag: '--deadline', arg: '<d>', help: 'leader: adaptive: the leader waits p90 of recent update arrival delays x 2, within [2 s, --round-timeout-ms]; fixed: always --round-timeout-ms; either way a round closes as soon as every member sent (README: Heterogeneous fleets)' }),
  roundTimeoutMs: knob(z.number().int().min(100).max(3_600_000).default(60_000), { flag: '--round-timeout-ms', arg: '<ms>', help: 'leader: the most a leader waits for updates (cap of the adaptive deadline)' }),
  committee: knob(z.number().int().min(0).max(1024).default(0), { flag: '--committee', arg: '<c>', help: 'leader: only the first c ranks of each round (a verifying committee; c is 0 or at least 3, and tolerates floor((c-1)/2) liars on it) pull every update and recompute the step; the others take the step over round.step and apply it only with the attestations of a committee majority (weaker trust: protocols/round.md "Verifying committee"); 0 = every member verifies' }),
  leaderTimeoutMs: knob(z.number().int().min(100).max(3_600_000).default(15_000), { flag: '--leader-timeout-ms', arg: '<ms>', help: 'leader: backup k takes over after k times this' }),
  gossipGamma: knob(z.number().min(0).max(1).default(0), { flag: '--gamma', arg: '<x>', help: "gossip: CHOCO consensus step size (0: the node's model is the sample-weighted average of the public copies)" }),
  gossipMomentum: knob(z.number().min(0).lt(1).default(DEFAULT_GOSSIP_MOMENTUM), { flag: '--gossip-momentum', arg: '<x>', help: "gossip: heavy-ball momentum on the node's averaged model" }),
  minMembers: knob(z.number().int().min(1).max(10_000).optional(), { flag: '--min-members', arg: '<n>', defaultText: 'n of --shard', help: 'members to wait for before round 1' }),
  // privacy
  dpClip: knob(z.number().positive().optional(), { flag: '--dp-clip', arg: '<x>', defaultText: 'off', help: 'client-level DP: clip each update to this L2 norm (needs --dp-noise)' }),
  dpNoise: knob(z.number().min(0).optional(), { flag: '--dp-noise', arg: '<z>', defaultText: 'off', help: 'client-level DP: Gaussian noise multiplier (needs --dp-clip); epsilon is logged each round' }),
  dpDelta: knob(z.number().gt(0).lt(1).default(1e-5), { flag: '--dp-delta', arg: '<x>', help: 'client-level DP: delta of the reported (epsilon, delta)' }),
  secagg: knob(z.boolean().default(false), { flag: '--secagg', help: 'leader protocol: secure aggregation, the leader learns only the mean of dense fixed-point masked updates (aggregator fedavg, fedavgm, fedadam, fedyogi or fedadagrad; no prototypes)' }),
  secaggClip: knob(z.number().positive().max(1000).default(1), { flag: '--secagg-clip', arg: '<x>', help: 'secure aggregation: clip each update value to [-x, x] before fixed-point encoding' }),
  // runtime and evaluation
  testSlice: knob(z.number().int().min(1).max(100_000).default(1000), { flag: '--test-slice', arg: '<n>', help: 'test images evaluated each round (a strided slice of the test split)' }),
  finalEval: knob(z.boolean().default(false), { flag: '--final-eval', help: 'after the last round, evaluate on the whole test split' }),
  threads: knob(z.number().int().min(1).max(256).optional(), { flag: '--threads', arg: '<n>', defaultText: 'cores (simulator: cores / nodes)', help: 'onnxruntime threads' }),
  emulateSlowdown: knob(z.number().min(1).max(100).default(1), { flag: '--emulate-slowdown', arg: '<f>', help: "benchmarks only: emulate a node f times slower at training: after each local step, and each step of the start-up speed measurement, it sleeps (f - 1) x the step's measured compute time (1: off; README: Heterogeneous fleets)" }),
  device: knob(z.enum(['cpu', 'cuda', 'auto']).default('cpu'), { flag: '--device', arg: '<d>', help: 'execution provider (auto: CUDA if it loads, else CPU with one log line)' }),
} as const;

/**
 * Fault injection, for simulations and tests only: profile keys (the simulator's `--fault` writes them), never CLI
 * flags of a real node.
 */
export const FL_FAULT_KEYS = {
  /** Drop this fraction of inbound round messages. */
  dropRate: z.number().min(0).max(1).default(0),
  /** This node misbehaves as a Byzantine member: its update scaled by `factor` (`scale`) or NaN (`nan`). */
  attack: z.object({ kind: z.enum(['scale', 'nan']), factor: z.number().finite().default(100) }).strict().optional(),
} as const;

export type FlKey = keyof typeof FL_KNOBS;
export const FL_KEYS = Object.keys(FL_KNOBS) as FlKey[];

/** Federated-learning settings of a node (the `fl` part of a node config; CLI and simulator flags map onto it). */
export const FederationConfigSchema = z.object({ ...FL_KNOBS, ...FL_FAULT_KEYS }).strict();
export type FederationConfig = z.infer<typeof FederationConfigSchema>;

/** The one set of defaults (what an empty `fl` profile gives). */
export const FL_DEFAULTS: Readonly<FederationConfig> = Object.freeze(FederationConfigSchema.parse({}));

/** The metadata of a key. */
export function knobMeta(key: FlKey): KnobMeta {
  return FL_KNOBS[key].meta() as unknown as KnobMeta;
}

/** The allowed values of a schema whose type is a finite set (enum, union of literals), unwrapping default/optional. */
export function allowedValues(schema: z.ZodType): readonly (string | number)[] | undefined {
  let s = schema as unknown as { _zod: { def: { type: string; innerType?: unknown }; values?: Set<unknown> } };
  while (['default', 'optional', 'nullable', 'prefault'].includes(s._zod.def.type)) s = s._zod.def.innerType as typeof s;
  if (s._zod.def.type === 'array') return allowedValues((s._zod.def as unknown as { element: z.ZodType }).element);
  if (!s._zod.values) return undefined;
  return [...s._zod.values].filter((v): v is string | number => typeof v === 'string' || typeof v === 'number');
}

/** Describe one zod issue of the `fl` settings by flag and key, with the allowed values when the type has a finite set. */
export function describeFlIssue(issue: z.core.$ZodIssue, input?: unknown, prefix = 'fl.'): string {
  const key = issue.path[0];
  if (typeof key === 'string' && key in FL_KNOBS) {
    const k = key as FlKey;
    const allowed = allowedValues(FL_KNOBS[k]);
    const received = typeof input === 'object' && input !== null ? (input as Record<string, unknown>)[k] : undefined;
    const got = received !== undefined ? ` (got ${JSON.stringify(received)})` : '';
    const what = allowed ? `must be one of ${allowed.join(', ')}` : issue.message;
    return `${knobMeta(k).flag} / ${prefix}${[k, ...issue.path.slice(1)].join('.')}: ${what}${got}`;
  }
  return `${prefix}${issue.path.join('.') || '(root)'}: ${issue.message}`;
}

/**
 * Validate `fl` settings: the schema, then what one key cannot say alone (the DP pair) and, with `filesystem`, what
 * must exist and match (the backbone's manifest with its input size and channels, the data). The round protocol's
 * own option rules (e.g. secure aggregation's) are the registry's: preflightFederation (src/round/preflight.ts) runs
 * both before a mesh starts.
 * @throws ConfigError naming the flags.
 */
export function checkFederationConfig(input: unknown, opts: { filesystem?: boolean } = {}): FederationConfig {
  const parsed = FederationConfigSchema.safeParse(input);
  if (!parsed.success) throw new ConfigError(`invalid federation settings:\n${parsed.error.issues.map((i) => `  ${describeFlIssue(i, input)}`).join('\n')}`);
  const cfg = parsed.data;
  if (cfg.budget === 'auto' && cfg.roundSeconds === undefined) throw new ConfigError('--budget auto needs --round-seconds <s> (fl.roundSeconds): the target seconds of local training per round');
  if ((cfg.dpClip === undefined) !== (cfg.dpNoise === undefined)) throw new ConfigError('differential privacy needs both --dp-clip and --dp-noise (fl.dpClip, fl.dpNoise)');
  if (cfg.aggregatorInner !== undefined && !SERVER_OPTIMIZER_RULES.includes(cfg.aggregator)) {
    throw new ConfigError(`--aggregator-inner ${cfg.aggregatorInner} (fl.aggregatorInner) is the inner rule of a server optimizer: use it with --aggregator ${SERVER_OPTIMIZER_RULES.join(' | ')}, not ${cfg.aggregator}`);
  }
  if (cfg.aggregatorInner !== undefined && cfg.aggregatorInner !== 'fedavg' && cfg.secagg) {
    throw new ConfigError(`--aggregator-inner ${cfg.aggregatorInner}: secure aggregation reveals only the mean update, so the inner rule must be fedavg`);
  }
  if (opts.filesystem) {
    const dir = cfg.backboneDir ?? MODELS_DIR;
    if (!existsSync(`${dir}/${cfg.backbone}.json`)) {
      throw new ConfigError(`--backbone ${cfg.backbone}: no such backbone in ${dir}; allowed: ${listBackbones(dir).join(', ') || 'none (npm run pretrain makes one)'}`);
    }
    const input = backboneInput(`${dir}/${cfg.backbone}.json`);
    if (input && ((cfg.imageSize !== undefined && cfg.imageSize !== input.size) || (cfg.channels !== undefined && cfg.channels !== input.channels))) {
      throw new ConfigError(`--image-size ${cfg.imageSize ?? input.size} --channels ${cfg.channels ?? input.channels}: backbone ${cfg.backbone} takes ${input.size}x${input.size} images with ${input.channels} channel(s); pick a backbone of that input (--backbone) or drop --image-size/--channels`);
    }
    resolveDataSource(cfg.dataset);
  }
  return cfg;
}

/** The round options of a federation config (what the protocol factory and its options schema get). */
export function roundOptionsOf(cfg: FederationConfig): RoundOptions {
  return {
    compression: { topk: cfg.topk, topkScope: cfg.topkScope, bits: cfg.bits, errorFeedback: cfg.errorFeedback, downlinkBits: cfg.downlinkBits, downlinkErrorFeedback: cfg.downlinkErrorFeedback, brotli: cfg.brotli },
    aggregator: cfg.aggregator, aggregatorOptions: definedOnly({ weighting: cfg.tensorWeighting === 'depth' && cfg.dpClip === undefined ? ('depth' as const) : undefined, serverLr: cfg.serverLr, serverMomentum: cfg.serverMomentum, inner: cfg.aggregatorInner, targetRank: cfg.trainable === 'lora+heads' ? (cfg.globalRank ?? cfg.rank) : undefined }),
    serverLrDecay: cfg.serverLrDecay ? { rounds: cfg.rounds } : undefined, quorum: cfg.quorum, maxRounds: cfg.rounds, roundTimeoutMs: cfg.roundTimeoutMs, leaderTimeoutMs: cfg.leaderTimeoutMs,
    committee: cfg.committee > 0 ? cfg.committee : undefined,
    minRoundTimeoutMs: cfg.deadline === 'fixed' ? cfg.roundTimeoutMs : undefined,
    gossipGamma: cfg.gossipGamma, gossipMomentum: cfg.gossipMomentum,
    dp: cfg.dpClip !== undefined ? { clipNorm: cfg.dpClip, noiseMultiplier: cfg.dpNoise! } : undefined,
    secagg: cfg.secagg ? { clip: cfg.secaggClip } : undefined,
  };
}

function definedOnly<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A backbone manifest's input size and channels (undefined when unreadable: loading the backbone reports that). */
function backboneInput(manifest: string): { size: number; channels: number } | undefined {
  try {
    const m = JSON.parse(readFileSync(manifest, 'utf8')) as { input?: { size?: unknown; channels?: unknown }; config?: { image?: unknown; channels?: unknown } };
    const size = m.input?.size ?? m.config?.image;
    const channels = m.input?.channels ?? m.config?.channels;
    return typeof size === 'number' && typeof channels === 'number' ? { size, channels } : undefined;
  } catch {
    return undefined;
  }
}

/** Backbone names in a models folder (files `<name>.json`). */
export function listBackbones(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
  } catch {
    return [];
  }
}

/**
 * `--classes`: a comma-separated list, or the path of a text file with one class per line (blank lines and lines
 * starting with # are skipped). @throws ConfigError on an empty list or a duplicate name.
 */
export function parseClassList(v: string): string[] {
  let names: string[];
  if (!v.includes(',') && existsSync(v) && statSync(v).isFile()) {
    names = readFileSync(v, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    if (names.length === 0) throw new ConfigError(`--classes ${v}: the file names no class (one class name per line)`);
  } else {
    names = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (names.length === 0) throw new ConfigError('--classes: give at least one class name, e.g. --classes normal,pneumonia (or a classes.txt)');
  }
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new ConfigError(`--classes names '${dup}' twice`);
  return names;
}

