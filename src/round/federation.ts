/**
 * The federated-learning loop of one node: train locally through onnxruntime, exchange compressed updates with
 * the chosen round protocol, evaluate, checkpoint. What `fmfl-node --rounds N ...` runs.
 */
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { AGGREGATOR_NAMES } from '../aggregate/index.ts';
import { loadData, shardIndices, type DataRequest, type Dataset, type LoadedData } from '../data/index.ts';
import type { Mesh } from '../mesh/index.ts';
import { federationModelDigest, loadBackboneShared, DEFAULT_BACKBONE } from '../model/backbone.ts';
import { loadCheckpoint, saveCheckpoint, type JsonValue } from '../model/checkpoint.ts';
import { LORA_TARGETS, type LoraConfig, type TrainableSet } from '../model/vit.ts';
import { exitTensorNames, trainableTensors } from '../model/architecture.ts';
import { initWeights } from '../model/vit.ts';
import { globalAtBudget, type NodeBudget } from '../aggregate/index.ts';
import { RdpAccountant } from '../privacy/index.ts';
import { logPriorBias, Trainer } from '../train/trainer.ts';
import { LR_SCHEDULES, lrAt } from '../train/schedule.ts';
import { joinOptimizerState, splitOptimizerState } from '../train/optim.ts';
import { manifestDigest, toUpdateManifest, type PrototypeTable, type TensorMap, type UpdateManifest } from '../update/index.ts';
import { ConfigError, FmflError } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';
import { GossipProtocol } from './gossip.ts';
import { LeaderProtocol } from './leader.ts';
import { withFaults } from './faults.ts';
import type { MeshPort } from './mesh-port.ts';
import { hex, makeState, prototypeTensors, type GlobalState } from './state.ts';
import { DEFAULT_COMPRESSION, DEFAULT_GOSSIP_MOMENTUM, PROTOCOL_NAMES, type ProtocolSnapshot, type RoundOptions, type RoundOutcome, type RoundProtocol } from './types.ts';

/** Federated-learning settings of a node (the `fl` part of a node config; CLI flags map onto it). */
export const FederationConfigSchema = z
  .object({
    protocol: z.enum(PROTOCOL_NAMES).default('leader'),
    rounds: z.number().int().min(1).max(100_000).default(30),
    localSteps: z.number().int().min(1).max(1_000_000).default(50),
    batch: z.number().int().min(1).max(4096).default(64),
    lr: z.number().positive().max(10).default(1e-3),
    /**
     * Local learning-rate schedule over the whole federation (rounds x localSteps): constant, or cosine decay from
     * `lr` to zero at the last step of the last round. Every node computes it from the global version it trains from.
     */
    lrSchedule: z.enum(LR_SCHEDULES).default('constant'),
    weightDecay: z.number().min(0).max(1).default(0.01),
    /**
     * Where the node's images come from: a bundled dataset (`fashion-mnist`, `mnist`), a folder of
     * `<class>/<image>` files (optionally `train/` and `test/` inside), or a CSV file of `path,label` rows.
     */
    dataset: z.string().min(1).max(4096).default('fashion-mnist'),
    /**
     * The federation's label set, in label order (every member must declare the same; it enters the model digest).
     * Default: the source's own (the bundled dataset's classes, or the sorted folder names).
     */
    classes: z.array(z.string().min(1).max(128).regex(/^[^,\n\r]+$/, 'class names hold no commas or line breaks')).min(1).max(256).optional(),
    /** The input size the node expects (checked against the backbone's input spec; default: the backbone's). */
    imageSize: z.number().int().min(4).max(512).optional(),
    /** Input channels the node expects, 1 or 3 (checked against the backbone's; default: the backbone's). */
    channels: z.union([z.literal(1), z.literal(3)]).optional(),
    /** Share of each class held out as this node's test split when its data has no `test/` part (seeded, stratified). */
    testFraction: z.number().gt(0).lt(1).default(0.2),
    /** This node's shard `i/n` (0-based i) of the train split. */
    shard: z.string().regex(/^\d+\/\d+$/, 'shard must look like i/n, e.g. 3/8').default('0/1'),
    /** Dirichlet label-skew concentration; omit (null) for an IID split. */
    alpha: z.number().positive().max(1e6).nullable().default(0.5),
    /** Seed of the partition: every node of a federation must use the same one. */
    partitionSeed: z.number().int().min(0).max(2 ** 31).default(42),
    /** Seed of the initial LoRA/exit-head weights: the same on every node (global version 0). */
    modelSeed: z.number().int().min(0).max(2 ** 31).default(7),
    /** Seed of this node's minibatch order and quantization noise (default: derived from the shard). */
    seed: z.number().int().min(0).max(2 ** 31).optional(),
    backbone: z.string().min(1).max(128).default(DEFAULT_BACKBONE),
    /** Folder holding the backbone (default: the project's models/). */
    backboneDir: z.string().min(1).optional(),
    /**
     * Fault injection for simulations and tests: this node misbehaves as a Byzantine member, sending its update
     * scaled by `factor` (`scale`) or an update whose values are NaN (`nan`). Never set on a real node.
     */
    /** Fault injection for simulations: drop this fraction of inbound round messages. */
    dropRate: z.number().min(0).max(1).default(0),
    attack: z.object({ kind: z.enum(['scale', 'nan']), factor: z.number().finite().default(100) }).strict().optional(),
    trainable: z.enum(['lora+heads', 'heads']).default('lora+heads'),
    rank: z.number().int().min(1).max(64).default(8),
    /**
     * Rank budgets (HetLoRA / FlexLoRA): rank of the federation's global adapter, the same on every member (default:
     * `rank`). A node with a smaller `rank` trains the global truncated to its rank (its LoRA alpha scaled by
     * rank / globalRank, so every member's adapter has the scale loraAlpha / globalRank); mixed ranks need a
     * rank-heterogeneous aggregator (hetlora-zero, hetlora-replicate, flexlora).
     */
    globalRank: z.number().int().min(1).max(64).optional(),
    /**
     * Depth budget (DepthFL / InclusiveFL): train and serve only blocks 1..maxDepth and their exits (the training
     * graph is cut there); the node's updates carry only those tensors (default: the model's depth).
     */
    maxDepth: z.number().int().min(1).max(1024).optional(),
    /** LoRA alpha; the scale is alpha / rank. 64 (scale 8 at r=8) is the product default, 16 the reference recipe's. */
    loraAlpha: z.number().positive().max(4096).default(64),
    /** Default: every projection (the product default found on Fashion-MNIST; `q,v` is the reference recipe). */
    loraTargets: z.array(z.enum(LORA_TARGETS)).min(1).default([...LORA_TARGETS]),
    protoWeight: z.number().min(0).max(100).default(0),
    /**
     * Logit adjustment against label skew (balanced softmax, as in FedLC): local training adds the log of the
     * node's own label prior to the logits inside the loss; predictions are unchanged.
     */
    logitAdjust: z.boolean().default(false),
    topk: z.number().positive().max(1).default(DEFAULT_COMPRESSION.topk),
    bits: z.union([z.literal(32), z.literal(16), z.literal(8), z.literal(4), z.literal(1)]).default(DEFAULT_COMPRESSION.bits),
    /** Per-tensor top-k measured 2.6 points better than one global threshold on the 8-node reference run. */
    topkScope: z.enum(['global', 'tensor']).default('tensor'),
    errorFeedback: z.boolean().default(true),
    downlinkBits: z.union([z.literal(32), z.literal(16), z.literal(8)]).default(DEFAULT_COMPRESSION.downlinkBits),
    /** Brotli over each update payload: lossless, about 8% smaller at top-10% 8-bit on real updates. */
    brotli: z.boolean().default(true),
    aggregator: z.string().refine((s) => AGGREGATOR_NAMES.includes(s), { message: `aggregator must be one of ${AGGREGATOR_NAMES.join(', ')}` }).default('fedavgm'),
    /** Server learning rate of fedavgm / fedadam / fedyogi / fedadagrad (default: the rule's own, 1 for fedavgm, 0.01 for the adaptive ones). */
    serverLr: z.number().positive().max(100).optional(),
    /** fedavgm: server momentum β in [0, 1) (default 0.6). */
    serverMomentum: z.number().min(0).lt(1).optional(),
    /** Decay serverLr over the rounds to 1 (cosine), so early rounds take large server steps and late ones settle. */
    serverLrDecay: z.boolean().default(false),
    /** Fewest contributions a round closes with, as a fraction of the roster (default: a majority; round.md "Quorum"). */
    quorum: z.number().gt(0).max(1).optional(),
    roundTimeoutMs: z.number().int().min(100).max(3_600_000).default(60_000),
    leaderTimeoutMs: z.number().int().min(100).max(3_600_000).default(15_000),
    gossipGamma: z.number().min(0).max(1).default(0),
    /** Gossip: heavy-ball momentum on the averaged model (the leader's FedAvgM default, 0.6). */
    gossipMomentum: z.number().min(0).lt(1).default(DEFAULT_GOSSIP_MOMENTUM),
    /**
     * Send prototype statistics every this many rounds (and always in the last round); 0 (default): only in the
     * last round, where they become the global prototypes for prototype-based prediction. With a prototype loss
     * term (protoWeight > 0) they are sent every round.
     */
    prototypeEvery: z.number().int().min(0).max(100_000).default(0),
    /** Shard samples used to compute local prototype statistics. */
    prototypeSamples: z.number().int().min(1).max(1_000_000).default(1000),
    /** Test images this node evaluates on each round (a strided slice of the test split). */
    testSlice: z.number().int().min(1).max(100_000).default(1000),
    /** After the last round, evaluate the final model on the whole test split. */
    finalEval: z.boolean().default(false),
    /** Members to wait for before round 1 (default: the shard count n). */
    minMembers: z.number().int().min(1).max(10_000).optional(),
    dpClip: z.number().positive().optional(),
    dpNoise: z.number().min(0).optional(),
    dpDelta: z.number().gt(0).lt(1).default(1e-5),
    /**
     * Secure aggregation (leader protocol): the leader learns only the mean of the round's deltas. Masked deltas
     * are dense 32-bit fixed point (top-k / quantization do not apply) and no prototype statistics are exchanged.
     */
    secagg: z.boolean().default(false),
    /** Secure aggregation: element-wise clip bound of each delta before fixed-point encoding (same on every member). */
    secaggClip: z.number().positive().max(1000).default(1),
    threads: z.number().int().min(1).max(256).optional(),
    device: z.enum(['cpu', 'cuda', 'auto']).default('cpu'),
  })
  .strict();
export type FederationConfig = z.infer<typeof FederationConfigSchema>;

/** Aggregators that work on the mean delta alone (what secure aggregation reveals). */
export const SECAGG_AGGREGATORS: readonly string[] = ['fedavg', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad'];

export class FederationError extends FmflError {
  constructor(message: string) {
    super('FEDERATION', message);
  }
}

/** What a node logs after every round. */
export interface RoundMetrics {
  node: string;
  round: number;
  version: number;
  hash: string;
  protocol: 'leader' | 'gossip';
  via: RoundOutcome['via'];
  leader?: string;
  contributors: number;
  trainLoss: number;
  accuracy: number[];
  ensembleAccuracy: number;
  bytesUp: number;
  bytesDown: number;
  /** Bytes of this node's own update in the round. */
  updateBytes: number;
  trainMs: number;
  roundMs: number;
  consensusDistance?: number;
  epsilon?: number;
}

/** File of the federation checkpoint in the state folder. */
export const CHECKPOINT_FILE = 'federation.fmfl';

export class Federation {
  readonly cfg: FederationConfig;
  readonly protocol: RoundProtocol;
  readonly trainer: Trainer;
  readonly manifest: UpdateManifest;
  /** The federation model digest this node advertises (backbone, input spec, label set, update shape). */
  readonly modelDigest: string;
  /** The federation's label set, in label order. */
  readonly classes: readonly string[];
  private readonly mesh: Mesh;
  private readonly logger: Logger;
  private readonly train: Dataset;
  private readonly test: Dataset;
  private readonly shard: Uint32Array;
  private readonly testIdx: Uint32Array;
  private readonly stateDir: string | undefined;
  private readonly accountant: RdpAccountant | null;
  /** This node's rank and depth budget against the global adapter. */
  readonly budget: NodeBudget;
  private stopped = false;

  private constructor(o: {
    cfg: FederationConfig; protocol: RoundProtocol; trainer: Trainer; manifest: UpdateManifest; mesh: Mesh; logger: Logger; modelDigest: string; classes: string[];
    train: Dataset; test: Dataset; shard: Uint32Array; testIdx: Uint32Array; stateDir?: string; accountant: RdpAccountant | null; budget: NodeBudget;
  }) {
    this.budget = o.budget;
    this.cfg = o.cfg;
    this.protocol = o.protocol;
    this.trainer = o.trainer;
    this.manifest = o.manifest;
    this.modelDigest = o.modelDigest;
    this.classes = o.classes;
    this.mesh = o.mesh;
    this.logger = o.logger;
    this.train = o.train;
    this.test = o.test;
    this.shard = o.shard;
    this.testIdx = o.testIdx;
    this.stateDir = o.stateDir;
    this.accountant = o.accountant;
  }

  static async create(mesh: Mesh, input: unknown, opts: { logger: Logger; stateDir?: string; decorate?: (port: MeshPort) => MeshPort }): Promise<Federation> {
    const parsed = FederationConfigSchema.safeParse(input);
    if (!parsed.success) throw new ConfigError(`invalid federation settings: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const cfg = parsed.data;
    const [si, sn] = cfg.shard.split('/').map(Number);
    if (!(sn >= 1 && si >= 0 && si < sn)) throw new ConfigError(`shard ${cfg.shard}: need 0 <= i < n`);
    if ((cfg.dpClip === undefined) !== (cfg.dpNoise === undefined)) throw new ConfigError('differential privacy needs both dpClip and dpNoise');
    if (cfg.secagg && cfg.protocol !== 'leader') throw new ConfigError('secure aggregation (secagg) needs the leader protocol');
    if (cfg.secagg && !SECAGG_AGGREGATORS.includes(cfg.aggregator)) {
      throw new ConfigError(`secure aggregation reveals only the mean update: aggregator must be one of ${SECAGG_AGGREGATORS.join(', ')}, not ${cfg.aggregator}`);
    }

    const bb = await loadBackboneShared(cfg.backbone, cfg.backboneDir);
    if ((cfg.imageSize !== undefined && cfg.imageSize !== bb.input.size) || (cfg.channels !== undefined && cfg.channels !== bb.input.channels)) {
      throw new ConfigError(`backbone ${cfg.backbone} takes ${bb.input.size}x${bb.input.size} images with ${bb.input.channels} channel(s), not ${cfg.imageSize ?? bb.input.size}x${cfg.imageSize ?? bb.input.size} with ${cfg.channels ?? bb.input.channels}: pick a backbone pretrained at that size (npm run pretrain -- --data <dir> --model <config> --name <name>, then --backbone <name>) or drop --image-size/--channels`);
    }
    const data = await sharedData({
      ref: cfg.dataset, input: { size: bb.input.size, channels: bb.input.channels }, classes: cfg.classes, testFraction: cfg.testFraction, seed: cfg.partitionSeed,
    });
    if (data.skipped.count > 0) {
      opts.logger.warn({ skipped: data.skipped.count, examples: data.skipped.examples.slice(0, 5) }, `skipped ${data.skipped.count} unreadable or unsupported image file(s)`);
    }
    const { train, test } = data;
    if (test.n === 0) throw new FederationError(`${cfg.dataset} has no test images: add a test/ folder or more images per class (--test-fraction ${cfg.testFraction})`);
    const modelCfg = { ...bb.cfg, classes: data.classes.length };
    const shard = shardIndices(train.labels, cfg.shard, cfg.alpha === null ? { seed: cfg.partitionSeed, scheme: 'iid' } : { seed: cfg.partitionSeed, scheme: 'dirichlet', alpha: cfg.alpha, dirichlet: { numClasses: modelCfg.classes } });
    if (shard.length < cfg.batch) throw new FederationError(`shard ${cfg.shard} has ${shard.length} samples, fewer than one batch of ${cfg.batch}`);
    const testIdx = stridedSlice(test.n, si, sn, cfg.testSlice);
    const globalRank = cfg.globalRank ?? cfg.rank;
    if (cfg.rank > globalRank) throw new ConfigError(`rank ${cfg.rank} exceeds the federation's globalRank ${globalRank}: a node trains the global adapter truncated to its rank`);
    if (cfg.maxDepth !== undefined && cfg.maxDepth > modelCfg.depth) throw new ConfigError(`maxDepth ${cfg.maxDepth} exceeds the backbone's ${modelCfg.depth} blocks`);
    const heterogeneous = globalRank !== cfg.rank || (cfg.maxDepth ?? modelCfg.depth) < modelCfg.depth;
    if (heterogeneous && (cfg.protocol !== 'leader' || cfg.secagg)) throw new ConfigError('rank and depth budgets (rank < globalRank, maxDepth) need the leader protocol without secure aggregation');
    const lora: LoraConfig | null = cfg.trainable === 'lora+heads' ? { rank: cfg.rank, alpha: (cfg.loraAlpha * cfg.rank) / globalRank, targets: cfg.loraTargets } : null;
    const globalLora: LoraConfig | null = lora ? { ...lora, rank: globalRank, alpha: cfg.loraAlpha } : null;
    const heads = exitTensorNames(bb.cfg);
    // Global version 0: backbone + fresh exit heads + fresh LoRA at the global rank, all from the federation's model
    // seed (the same on every member whatever its own rank); the trainer starts from it truncated to its rank.
    const manifest = toUpdateManifest(trainableTensors(modelCfg, cfg.trainable as TrainableSet, globalLora), { prototypes: { exits: modelCfg.depth, classes: modelCfg.classes, dim: modelCfg.dim } });
    const base = new Map([...bb.weights].filter(([k]) => !heads.has(k)));
    const specs0 = trainableTensors(modelCfg, cfg.trainable as TrainableSet, globalLora);
    const fresh0 = initWeights(specs0.filter((sp) => !base.has(sp.name)), cfg.modelSeed);
    const global0 = new Map(specs0.map((sp) => [sp.name, Float32Array.from(base.get(sp.name) ?? fresh0.get(sp.name)!)]));
    const budgetOf = (trained?: readonly string[]): NodeBudget => ({ globalRank: lora ? globalRank : 0, rank: lora ? cfg.rank : 0, trained });
    const weights = new Map([...base, ...globalAtBudget(global0, manifest, budgetOf())]);
    const trainer = await Trainer.create({
      cfg: modelCfg, lora, norm: bb.input, trainableSet: cfg.trainable as TrainableSet, weights, batch: cfg.batch, seed: cfg.modelSeed, maxDepth: cfg.maxDepth,
      optimizer: { kind: 'adamw', lr: cfg.lr, weightDecay: cfg.weightDecay }, protoWeight: cfg.protoWeight, logitAdjust: cfg.logitAdjust,
      threads: cfg.threads, provider: cfg.device, logger: opts.logger,
    });
    if (cfg.logitAdjust) {
      const counts = new Array<number>(modelCfg.classes).fill(0);
      for (const i of shard) counts[train.labels[i]]++;
      trainer.setLogitBias(logPriorBias(counts));
    }
    const modelDigest = federationModelDigest({ backboneSha256: bb.manifest.sha256, input: bb.input, labels: data.classes, updateManifestDigest: manifestDigest(manifest) });
    const initial = makeState(0, global0, [], manifest);
    const budget = budgetOf(trainer.depth < modelCfg.depth ? trainer.trainedSpecs.map((s) => s.name) : undefined);

    let restore: ProtocolSnapshot | undefined;
    if (opts.stateDir && existsSync(`${opts.stateDir}/${CHECKPOINT_FILE}`)) {
      restore = await readFederationCheckpoint(`${opts.stateDir}/${CHECKPOINT_FILE}`, manifest, cfg, trainer);
      opts.logger.info({ version: restore.state.version }, 'resuming from checkpoint');
    }
    const selfId = mesh.peerId.toString();
    const seed = cfg.seed ?? (cfg.modelSeed * 1000 + si);
    // Fault injection (simulator, tests) decorates the mesh the protocol sees; the protocol itself stays honest.
    let port: MeshPort = opts.decorate ? opts.decorate(mesh) : mesh;
    if (cfg.attack || cfg.dropRate > 0) {
      port = withFaults(port, {
        kind: cfg.attack ? (cfg.attack.kind === 'nan' ? 'nan-update' : 'scale-update') : 'none', factor: cfg.attack?.factor,
        dropRate: cfg.dropRate, seed, manifest, loraRank: budget.globalRank,
      }).port;
    }
    const ctx = {
      mesh: port, federation: mesh.federation, selfId, manifest, loraRank: budget.globalRank, logger: opts.logger, seed,
      members: () => [selfId, ...mesh.membership.memberIds(false)].sort(),
    };
    const ropts: RoundOptions = {
      compression: { topk: cfg.topk, topkScope: cfg.topkScope, bits: cfg.bits, errorFeedback: cfg.errorFeedback, downlinkBits: cfg.downlinkBits, brotli: cfg.brotli },
      aggregator: cfg.aggregator, aggregatorOptions: definedOnly({ serverLr: cfg.serverLr, serverMomentum: cfg.serverMomentum, targetRank: lora ? globalRank : undefined }),
      serverLrDecay: cfg.serverLrDecay ? { rounds: cfg.rounds } : undefined, quorum: cfg.quorum, maxRounds: cfg.rounds, roundTimeoutMs: cfg.roundTimeoutMs, leaderTimeoutMs: cfg.leaderTimeoutMs,
      gossipGamma: cfg.gossipGamma, gossipMomentum: cfg.gossipMomentum,
      dp: cfg.dpClip !== undefined ? { clipNorm: cfg.dpClip, noiseMultiplier: cfg.dpNoise! } : undefined,
      secagg: cfg.secagg ? { clip: cfg.secaggClip } : undefined,
    };
    const protocol: RoundProtocol = cfg.protocol === 'leader' ? new LeaderProtocol(ctx, ropts, initial, restore) : new GossipProtocol(ctx, ropts, initial, restore);
    const accountant = ropts.dp ? new RdpAccountant() : null;
    mesh.membership.setModelDigest(modelDigest);
    return new Federation({ cfg, protocol, trainer, manifest, modelDigest, classes: data.classes, mesh, logger: opts.logger, train, test, shard, testIdx, stateDir: opts.stateDir, accountant, budget });
  }

  /** Number of training samples of this node. */
  get shardSize(): number {
    return this.shard.length;
  }

  /** Wait until at least `n` members (including self) are in the view, or the timeout passes. */
  async waitForMembers(n: number, timeoutMs: number): Promise<number> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const have = this.mesh.membership.memberIds(true).length;
      if (have >= n || Date.now() >= end || this.stopped) return have;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Wait until every protocol topic has a gossipsub neighbour (when there are other members), so round 1 is not lost. */
  async waitForTopicPeers(timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!this.stopped && Date.now() < end) {
      if (this.mesh.membership.memberIds(false).length === 0) return;
      if (this.protocol.topics.every((t) => this.mesh.topicPeers(t).length > 0)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Run rounds until the global version reaches `cfg.rounds` (or stop() is called). `onRound` receives each
   * round's metrics; `onStep` each local training step (for a progress bar).
   */
  async run(hooks: {
    onRound?: (m: RoundMetrics) => void;
    onStep?: (step: number, total: number, loss: number) => void;
    onFinal?: (ev: { accuracy: number[]; ensembleAccuracy: number; n: number; version: number; hash: string }) => void;
  } = {}): Promise<RoundMetrics[]> {
    const out: RoundMetrics[] = [];
    await this.protocol.start();
    const [, sn] = this.cfg.shard.split('/').map(Number);
    await this.waitForMembers(this.cfg.minMembers ?? sn, 60_000);
    await this.waitForTopicPeers(10_000);
    await this.protocol.catchUp?.();
    try {
      const self = this;
      while (!this.stopped && this.protocol.round < this.cfg.rounds) {
        const t0 = performance.now();
        this.trainer.loadParams(this.modelAtBudget(this.protocol.trainingStart()));
        if (this.cfg.protoWeight > 0) {
          const c = this.trainer.cfg;
          const { protos, mask } = prototypeTensors(this.protocol.prototypes(), c.depth, c.classes, c.dim);
          this.trainer.setPrototypes(protos, mask);
        }
        // Step k of the round that produces version v+1 is global step v·E + k of the schedule.
        const total = this.cfg.rounds * this.cfg.localSteps;
        const first = Math.min(total - 1, this.protocol.round * this.cfg.localSteps);
        const lrOf = (k: number): number => lrAt(this.cfg.lrSchedule, this.cfg.lr, Math.min(total - 1, first + k), total);
        this.trainer.optimizer.lr = lrOf(0);
        const trainLoss = await this.trainer.trainSteps(this.train, this.shard, this.cfg.localSteps, (i, l) => {
          this.trainer.optimizer.lr = lrOf(i + 1);
          hooks.onStep?.(i + 1, this.cfg.localSteps, l);
        }, {
          get aborted(): boolean {
            return self.stopped;
          },
        });
        const trainMs = performance.now() - t0;
        if (this.stopped) break;
        const r = this.protocol.round + 1;
        const every = this.cfg.protoWeight > 0 ? 1 : this.cfg.prototypeEvery;
        // With secure aggregation no prototype statistics are exchanged (they would travel in the clear).
        const sendProtos = !this.cfg.secagg && (r >= this.cfg.rounds || (every > 0 && r % every === 0));
        const prototypes = sendProtos ? await this.localPrototypes() : [];
        const outcome = await this.protocol.exchange({ tensors: this.trainer.snapshot(), prototypes, sampleCount: this.shard.length, budget: this.budget });
        if (this.accountant && this.cfg.dpNoise !== undefined) this.accountant.step(1, this.cfg.dpNoise, 1);
        this.trainer.loadParams(this.modelAtBudget(this.protocol.model()));
        const ev = await this.trainer.evaluate(this.test, this.testIdx);
        const m: RoundMetrics = {
          node: this.mesh.peerId.toString(), round: outcome.round, version: this.protocol.round, hash: this.stateHash().slice(0, 16),
          protocol: this.protocol.name, via: outcome.via, leader: outcome.leader, contributors: outcome.contributors.length,
          trainLoss, accuracy: ev.accuracy, ensembleAccuracy: ev.ensembleAccuracy, bytesUp: outcome.bytesUp, bytesDown: outcome.bytesDown, updateBytes: outcome.updateBytes ?? outcome.bytesUp,
          trainMs: Math.round(trainMs), roundMs: Math.round(performance.now() - t0), consensusDistance: outcome.consensusDistance,
          epsilon: this.accountant ? this.accountant.epsilon(this.cfg.dpDelta) : undefined,
        };
        await this.checkpoint();
        out.push(m);
        hooks.onRound?.(m);
      }
    } catch (err) {
      if (!this.stopped) throw err;
    }
    if (this.cfg.finalEval && !this.stopped) {
      const ev = await this.evaluate();
      hooks.onFinal?.({ accuracy: ev.accuracy, ensembleAccuracy: ev.ensembleAccuracy, n: ev.n, version: this.protocol.round, hash: this.stateHash().slice(0, 16) });
    }
    return out;
  }

  /** Global tensors as this node trains and serves them (LoRA truncated to its rank). */
  modelAtBudget(global: TensorMap): TensorMap {
    return globalAtBudget(global, this.manifest, this.budget);
  }

  private stateHash(): string {
    const s = this.protocol.snapshot().state;
    return hex(s.hash);
  }

  /** Per-exit, per-class embedding sums and counts over (up to `prototypeSamples` samples of) the shard. */
  private async localPrototypes(): Promise<PrototypeTable[]> {
    // The shard is ordered by class: take evenly spaced samples so every class the node holds is represented.
    const n = this.cfg.prototypeSamples;
    const idx = this.shard.length > n ? Uint32Array.from({ length: n }, (_, k) => this.shard[Math.floor((k * this.shard.length) / n)]) : this.shard;
    const st = await this.trainer.prototypeStats(this.train, idx);
    const tables: PrototypeTable[] = [];
    for (let e = 0; e < st.exits; e++) {
      const counts: number[] = [];
      const sums = new Float32Array(st.classes * st.dim);
      for (let c = 0; c < st.classes; c++) {
        counts.push(st.counts[e * st.classes + c]);
        for (let k = 0; k < st.dim; k++) sums[c * st.dim + k] = st.sums[(e * st.classes + c) * st.dim + k];
      }
      tables.push({ exit: e, dim: st.dim, counts, sums });
    }
    return tables;
  }

  /** Full evaluation of the current model on `indices` of the test split (all by default). */
  async evaluate(indices?: ArrayLike<number>) {
    this.trainer.loadParams(this.modelAtBudget(this.protocol.model()));
    return this.trainer.evaluate(this.test, indices);
  }

  /** Write the protocol state, error feedback and optimizer state atomically. */
  async checkpoint(): Promise<void> {
    if (!this.stateDir) return;
    await writeFederationCheckpoint(`${this.stateDir}/${CHECKPOINT_FILE}`, this.protocol.snapshot(), this.trainer, this.cfg, this.classes);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.protocol.stop();
  }

  async release(): Promise<void> {
    await this.trainer.release();
  }
}

const loaded = new Map<string, Promise<LoadedData>>();
/**
 * A node's data loaded once per process and shared (read-only) by every federation in it that asks for the same
 * source, input, label set and split; each node shards it by index (the in-process simulator runs many nodes).
 */
function sharedData(req: DataRequest): Promise<LoadedData> {
  const key = JSON.stringify([process.env.FMFL_CACHE_DIR ?? '', req.ref, req.input, req.classes ?? null, req.testFraction ?? null, req.seed ?? null]);
  let p = loaded.get(key);
  if (p === undefined) {
    p = loadData(req);
    loaded.set(key, p);
    p.catch(() => loaded.delete(key));
  }
  return p;
}

/** `max` test indices spread evenly over the (class-ordered) split, offset by the node's shard index. */
function stridedSlice(n: number, i: number, count: number, max: number): Uint32Array {
  if (max >= n) return Uint32Array.from({ length: n }, (_, k) => k);
  const step = n / max;
  const offset = Math.floor((i * step) / Math.max(1, count));
  return Uint32Array.from({ length: max }, (_, k) => Math.min(n - 1, Math.floor(k * step) + offset));
}

async function writeFederationCheckpoint(path: string, snap: ProtocolSnapshot, trainer: Trainer, cfg: FederationConfig, classes: readonly string[]): Promise<void> {
  const tensors = new Map<string, Float32Array>();
  for (const [k, v] of snap.state.tensors) tensors.set(`global/${k}`, v);
  for (const [k, v] of snap.residual) tensors.set(`residual/${k}`, Float32Array.from(v));
  snap.state.prototypes.forEach((p) => tensors.set(`proto/${p.exit}`, p.sums));
  if (snap.publicModel) for (const [k, v] of snap.publicModel.tensors) tensors.set(`public/${k}`, v);
  if (snap.serverOpt) {
    for (const [k, v] of snap.serverOpt.m) tensors.set(`server-m/${k}`, Float32Array.from(v));
    for (const [k, v] of snap.serverOpt.v) tensors.set(`server-v/${k}`, Float32Array.from(v));
  }
  const opt = splitOptimizerState(trainer.optimizerState());
  for (const [k, v] of opt.tensors) tensors.set(k, v);
  const meta: JsonValue = {
    kind: 'federation', protocol: snap.protocol, version: snap.state.version, hash: hex(snap.state.hash),
    backbone: cfg.backbone, loraAlpha: cfg.loraAlpha, loraRank: cfg.rank, loraTargets: cfg.loraTargets, trainable: cfg.trainable, labels: [...classes],
    prototypeCounts: snap.state.prototypes.map((p) => ({ exit: p.exit, dim: p.dim, counts: p.counts })),
    publicRound: snap.publicModel?.round ?? null, serverOptStep: snap.serverOpt?.step ?? null,
    certificate: snap.certificate ? snap.certificate.map((a) => Buffer.from(a).toString('base64')) : null, serverKnown: snap.serverKnown ?? null,
    optimizer: opt.meta as unknown as JsonValue,
  };
  await saveCheckpoint(path, tensors, meta);
}

async function readFederationCheckpoint(path: string, manifest: UpdateManifest, cfg: FederationConfig, trainer: Trainer): Promise<ProtocolSnapshot> {
  const ck = await loadCheckpoint(path, { copy: true });
  const meta = ck.metadata as Record<string, any>;
  if (!meta || meta.kind !== 'federation') throw new FederationError(`${path} is not a federation checkpoint`);
  if (meta.protocol !== cfg.protocol) throw new FederationError(`${path} was written by the ${meta.protocol} protocol; start with --protocol ${meta.protocol} or a fresh --state-dir`);
  const pick = (prefix: string): Map<string, Float32Array> => {
    const m = new Map<string, Float32Array>();
    for (const [k, t] of ck.tensors) if (k.startsWith(prefix)) m.set(k.slice(prefix.length), t.data);
    return m;
  };
  const tensors: TensorMap = pick('global/');
  for (const s of manifest.tensors) if (!tensors.has(s.name)) throw new FederationError(`${path}: tensor ${s.name} missing; the model settings changed since it was written`);
  const protoSums = pick('proto/');
  const prototypes: PrototypeTable[] = (meta.prototypeCounts as { exit: number; dim: number; counts: number[] }[]).map((p) => ({
    exit: p.exit, dim: p.dim, counts: p.counts, sums: protoSums.get(String(p.exit)) ?? new Float32Array(p.counts.length * p.dim),
  }));
  const state: GlobalState = makeState(meta.version, tensors, prototypes, manifest);
  if (hex(state.hash) !== meta.hash) throw new FederationError(`${path}: state hash mismatch`);
  const residual = new Map([...pick('residual/')].map(([k, v]) => [k, Float64Array.from(v)]));
  const pub = pick('public/');
  const snap: ProtocolSnapshot = { protocol: cfg.protocol, state, residual };
  if (pub.size) snap.publicModel = { round: meta.publicRound ?? state.version, tensors: pub };
  if (meta.serverOptStep !== null && meta.serverOptStep !== undefined) {
    snap.serverOpt = {
      step: meta.serverOptStep,
      m: new Map([...pick('server-m/')].map(([k, v]) => [k, Float64Array.from(v)])),
      v: new Map([...pick('server-v/')].map(([k, v]) => [k, Float64Array.from(v)])),
    };
  }
  if (Array.isArray(meta.certificate)) snap.certificate = (meta.certificate as string[]).slice(0, 4096).map((b) => new Uint8Array(Buffer.from(b, 'base64')));
  if (typeof meta.serverKnown === 'boolean') snap.serverKnown = meta.serverKnown;
  if (meta.optimizer) trainer.optimizer.loadState(joinOptimizerState(meta.optimizer, ck.tensors));
  return snap;
}

function definedOnly<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

