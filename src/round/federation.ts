/**
 * The federated-learning loop of one node: train locally through onnxruntime, exchange compressed updates with
 * the chosen round protocol, evaluate, checkpoint. What `fmfl-node --rounds N ...` runs.
 */
import { existsSync } from 'node:fs';
import { labelHistogram, loadData, matchedTestIndices, shardIndices, type DataRequest, type Dataset, type LoadedData } from '../data/index.ts';
import type { Mesh } from '../mesh/index.ts';
import { federationModelDigest, loadBackboneShared } from '../model/backbone.ts';
import { loadCheckpoint, saveCheckpoint, type JsonValue } from '../model/checkpoint.ts';
import { type LoraConfig, type TrainableSet } from '../model/vit.ts';
import { exitTensorNames, trainableTensors } from '../model/architecture.ts';
import { initWeights } from '../model/vit.ts';
import { globalAtBudget, type NodeBudget } from '../aggregate/index.ts';
import { RdpAccountant } from '../privacy/index.ts';
import { logPriorBias, Trainer } from '../train/trainer.ts';
import { lrAt } from '../train/schedule.ts';
import { joinOptimizerState, splitOptimizerState, type OptimizerStateMeta } from '../train/optim.ts';
import { PersonalAdapter, PersonalError } from '../train/personal.ts';
import { manifestDigest, toUpdateManifest, type PrototypeTable, type TensorMap, type UpdateManifest } from '../update/index.ts';
import { ConfigError, FmflError } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';
import { withFaults } from './faults.ts';
import type { MeshPort } from './mesh-port.ts';
import { hex, makeState, prototypeTensors, type GlobalState } from './state.ts';
import { roundOptionsOf, type FederationConfig } from './fl-config.ts';
import { preflightFederation } from './preflight.ts';
import { autoLocalSteps } from './auto-steps.ts';
import { roundProtocol } from './registry.ts';
import type { ProtocolName, ProtocolSnapshot, RoundOutcome, RoundProtocol } from './types.ts';

export { FederationConfigSchema, type FederationConfig } from './fl-config.ts';
export { SECAGG_AGGREGATORS } from './registry.ts';

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
  protocol: ProtocolName;
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
  /** Local steps trained this round (`--local-steps`, or its `--local-steps-auto` share). */
  localSteps?: number;
  /** Training samples/s this node advertises (measured at start; 0: not measured). */
  trainThroughput?: number;
  trainMs: number;
  /** Evaluation of the round's model on the test slice (ms). */
  evalMs?: number;
  roundMs: number;
  consensusDistance?: number;
  epsilon?: number;
  /**
   * With `--personal head|lora`: on the node's own test split (its train shard's label distribution), per exit, the
   * global model's accuracy and the personal model's (personal heads, or personal LoRA and heads), after this round.
   */
  personal?: { n: number; global: number[]; personal: number[]; trainLoss: number };
}

/** How long round 1 waits for the members (n of --shard, or --min-members) before it starts with those present. */
export const MEMBER_WAIT_MS = 60_000;

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
  /** Personal adapters (`--personal head|lora`), or null. */
  readonly personal: PersonalAdapter | null;
  /** The node's own test split (its shard's label distribution), for personal accuracy; empty without --personal. */
  readonly personalTestIdx: Uint32Array;
  /** This node's rank and depth budget against the global adapter. */
  readonly budget: NodeBudget;
  private stopped = false;

  private constructor(o: {
    cfg: FederationConfig; protocol: RoundProtocol; trainer: Trainer; manifest: UpdateManifest; mesh: Mesh; logger: Logger; modelDigest: string; classes: string[];
    train: Dataset; test: Dataset; shard: Uint32Array; testIdx: Uint32Array; stateDir?: string; accountant: RdpAccountant | null; budget: NodeBudget;
    personal: PersonalAdapter | null; personalTestIdx: Uint32Array;
  }) {
    this.personal = o.personal;
    this.personalTestIdx = o.personalTestIdx;
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
    const cfg = preflightFederation(input);
    const [si, sn] = cfg.shard.split('/').map(Number);
    const ropts = roundOptionsOf(cfg);

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
    const specs0 = trainableTensors(modelCfg, cfg.trainable as TrainableSet, globalLora);
    const manifest = toUpdateManifest(specs0, { prototypes: { exits: modelCfg.depth, classes: modelCfg.classes, dim: modelCfg.dim } });
    const base = new Map([...bb.weights].filter(([k]) => !heads.has(k)));
    const fresh0 = initWeights(specs0.filter((sp) => !base.has(sp.name)), cfg.modelSeed);
    const global0 = new Map(specs0.map((sp) => [sp.name, Float32Array.from(base.get(sp.name) ?? fresh0.get(sp.name)!)]));
    const budgetOf = (trained?: readonly string[]): NodeBudget => ({ globalRank: lora ? globalRank : 0, rank: lora ? cfg.rank : 0, trained });
    const weights = new Map([...base, ...globalAtBudget(global0, manifest, budgetOf())]);
    const trainer = await Trainer.create({
      cfg: modelCfg, lora, norm: bb.input, trainableSet: cfg.trainable as TrainableSet, weights, batch: cfg.batch, seed: cfg.modelSeed, maxDepth: cfg.maxDepth,
      optimizer: { kind: 'adamw', lr: cfg.lr, weightDecay: cfg.weightDecay }, protoWeight: cfg.protoWeight, logitAdjust: cfg.logitAdjust,
      distillWeight: cfg.distill, distillTemperature: cfg.distillTemperature, threads: cfg.threads, provider: cfg.device, logger: opts.logger, slowdown: cfg.emulateSlowdown,
    });
    if (cfg.emulateSlowdown > 1) opts.logger.warn({ emulateSlowdown: cfg.emulateSlowdown }, `--emulate-slowdown ${cfg.emulateSlowdown}: training is slowed down ${cfg.emulateSlowdown}x on purpose (a benchmark's emulated slow device)`);
    if (cfg.logitAdjust) {
      const counts = new Array<number>(modelCfg.classes).fill(0);
      for (const i of shard) counts[train.labels[i]]++;
      trainer.setLogitBias(logPriorBias(counts));
    }
    const modelDigest = federationModelDigest({ backboneSha256: bb.manifest.sha256, input: bb.input, labels: data.classes, updateManifestDigest: manifestDigest(manifest) });
    const initial = makeState(0, global0, [], manifest);
    const budget = budgetOf(trainer.depth < modelCfg.depth ? trainer.trainedSpecs.map((s) => s.name) : undefined);
    const selfSeed = cfg.seed ?? (cfg.modelSeed * 1000 + si);
    const personal = cfg.personal === 'none' ? null : PersonalAdapter.create(cfg.personal, trainer, heads, { lr: cfg.lr, weightDecay: cfg.weightDecay, seed: selfSeed, lambda: cfg.personalLambda });
    // The node's own test split: --test-slice test images with its shard's label proportions, seeded by partition and shard.
    const personalTestIdx = personal ? matchedTestIndices(test.labels, labelHistogram(train.labels, shard, modelCfg.classes), Math.min(cfg.testSlice, test.n), cfg.partitionSeed * 1000 + si) : new Uint32Array(0);

    let restore: ProtocolSnapshot | undefined;
    if (opts.stateDir && existsSync(`${opts.stateDir}/${CHECKPOINT_FILE}`)) {
      restore = await readFederationCheckpoint(`${opts.stateDir}/${CHECKPOINT_FILE}`, manifest, cfg, trainer, personal);
      opts.logger.info({ version: restore.state.version }, 'resuming from checkpoint');
    }
    const selfId = mesh.peerId.toString();
    const seed = selfSeed;
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
    const protocol: RoundProtocol = roundProtocol(cfg.protocol).create(ctx, ropts, initial, restore);
    const accountant = ropts.dp ? new RdpAccountant() : null;
    mesh.membership.setModelDigest(modelDigest);
    return new Federation({ cfg, protocol, trainer, manifest, modelDigest, classes: data.classes, mesh, logger: opts.logger, train, test, shard, testIdx, stateDir: opts.stateDir, accountant, budget, personal, personalTestIdx });
  }

  /** Number of training samples of this node. */
  get shardSize(): number {
    return this.shard.length;
  }

  /** Label histograms of this node's shard and of its own test split (`--personal`; empty without it). */
  ownLabelHistograms(): { shard: Uint32Array; test: Uint32Array } {
    const k = this.trainer.cfg.classes;
    return { shard: labelHistogram(this.train.labels, this.shard, k), test: labelHistogram(this.test.labels, this.personalTestIdx, k) };
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
    /** The final state changed after the last round was reported (an uncertified one replaced by the certified one). */
    onFinalState?: (st: { version: number; hash: string }) => void;
  } = {}): Promise<RoundMetrics[]> {
    const out: RoundMetrics[] = [];
    await this.protocol.start();
    const [, sn] = this.cfg.shard.split('/').map(Number);
    const need = this.cfg.minMembers ?? sn;
    const have = await this.waitForMembers(need, MEMBER_WAIT_MS);
    if (have < need && !this.stopped) {
      this.logger.warn({ have, need, waitedS: MEMBER_WAIT_MS / 1000 }, `waited ${MEMBER_WAIT_MS / 1000} s for ${need} members, ${have} here: starting without the others (they join the rounds when they connect)`);
    }
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
        const steps = this.localStepsNow();
        const trainLoss = await this.trainer.trainSteps(this.train, this.shard, steps, (i, l) => {
          this.trainer.optimizer.lr = lrOf(i + 1);
          hooks.onStep?.(i + 1, steps, l);
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
        const te = performance.now();
        const ev = await this.trainer.evaluate(this.test, this.testIdx);
        const evalMs = performance.now() - te;
        // The personal phase runs at the rate this round's local training started at: the schedule's position after the
        // round is exactly 0 in the last round of a cosine schedule, which would leave the last personal steps idle.
        const personal = this.personal ? await this.personalPhase(lrOf(0)) : undefined;
        if (this.stopped) break;
        const m: RoundMetrics = {
          node: this.mesh.peerId.toString(), round: outcome.round, version: this.protocol.round, hash: this.stateHash().slice(0, 16),
          protocol: this.protocol.name, via: outcome.via, leader: outcome.leader, contributors: outcome.contributors.length,
          trainLoss, accuracy: ev.accuracy, ensembleAccuracy: ev.ensembleAccuracy, bytesUp: outcome.bytesUp, bytesDown: outcome.bytesDown, updateBytes: outcome.updateBytes ?? outcome.bytesUp,
          localSteps: steps, trainThroughput: this.mesh.membership.getCapabilities().trainThroughput, trainMs: Math.round(trainMs), evalMs: Math.round(evalMs), roundMs: Math.round(performance.now() - t0), consensusDistance: outcome.consensusDistance,
          epsilon: this.accountant ? this.accountant.epsilon(this.cfg.dpDelta) : undefined,
          ...(personal ? { personal } : {}),
        };
        await this.checkpoint();
        out.push(m);
        hooks.onRound?.(m);
      }
    } catch (err) {
      if (!this.stopped) throw err;
    }
    const final = async (): Promise<void> => {
      if (!this.cfg.finalEval || this.stopped) return;
      const ev = await this.evaluate();
      hooks.onFinal?.({ accuracy: ev.accuracy, ensembleAccuracy: ev.ensembleAccuracy, n: ev.n, version: this.protocol.round, hash: this.stateHash().slice(0, 16) });
    };
    await final();
    // Members one round behind still need the final state: serve it a bounded while before the node shuts down. If
    // this node's final state was one the federation did not certify, finish replaced it: report and serve that one.
    if (!this.stopped && this.protocol.round >= this.cfg.rounds && (await this.protocol.finish?.()) === true) {
      await this.checkpoint();
      hooks.onFinalState?.({ version: this.protocol.round, hash: this.stateHash().slice(0, 16) });
      await final();
    }
    return out;
  }

  /**
   * The personal phase (src/train/personal.ts: FedRep's head phase, or Ditto's personal step), with the trainer holding
   * the new global model: the global model's accuracy on the node's own test split, then the personal adapter trained
   * on the shard and evaluated there.
   */
  private async personalPhase(lr: number): Promise<NonNullable<RoundMetrics['personal']>> {
    const g = await this.trainer.evaluate(this.test, this.personalTestIdx);
    const self = this;
    const trainLoss = await this.personal!.train(this.train, this.shard, this.cfg.personalSteps, lr, { get aborted(): boolean { return self.stopped; } });
    const p = await this.personal!.evaluate(this.test, this.personalTestIdx);
    return { n: p.n, global: g.accuracy, personal: p.accuracy, trainLoss };
  }

  /** This round's local steps: `--local-steps`, or with `--local-steps-auto` scaled by measured speed (src/round/auto-steps.ts). */
  localStepsNow(): number {
    if (!this.cfg.localStepsAuto) return this.cfg.localSteps;
    const m = this.mesh.membership;
    return autoLocalSteps(this.cfg.localSteps, m.getCapabilities().trainThroughput, m.members().map((x) => x.capabilities.trainThroughput));
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
    await writeFederationCheckpoint(`${this.stateDir}/${CHECKPOINT_FILE}`, this.protocol.snapshot(), this.trainer, this.cfg, this.classes, this.personal);
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

async function writeFederationCheckpoint(path: string, snap: ProtocolSnapshot, trainer: Trainer, cfg: FederationConfig, classes: readonly string[], personal: PersonalAdapter | null): Promise<void> {
  const tensors = new Map<string, Float32Array>();
  for (const [k, v] of snap.state.tensors) tensors.set(`global/${k}`, v);
  for (const [k, v] of snap.residual) tensors.set(`residual/${k}`, Float32Array.from(v));
  snap.state.prototypes.forEach((p) => tensors.set(`proto/${p.exit}`, p.sums));
  const own = roundProtocol(snap.protocol).snapshot.encode(snap);
  for (const [k, v] of own.tensors) tensors.set(k, v);
  const opt = splitOptimizerState(trainer.optimizerState());
  for (const [k, v] of opt.tensors) tensors.set(k, v);
  const mine = personal?.checkpoint();
  if (mine) for (const [k, v] of mine.tensors) tensors.set(k, v);
  const meta: JsonValue = {
    kind: 'federation', protocol: snap.protocol, version: snap.state.version, hash: hex(snap.state.hash),
    backbone: cfg.backbone, loraAlpha: cfg.loraAlpha, loraRank: cfg.rank, maxDepth: cfg.maxDepth ?? null, loraTargets: cfg.loraTargets, trainable: cfg.trainable, labels: [...classes],
    prototypeCounts: snap.state.prototypes.map((p) => ({ exit: p.exit, dim: p.dim, counts: p.counts })),
    ...own.meta,
    optimizer: opt.meta as unknown as JsonValue,
    ...(mine ? { personalOptimizer: mine.meta as unknown as JsonValue, personalKind: personal!.kind } : {}),
  };
  await saveCheckpoint(path, tensors, meta);
}

async function readFederationCheckpoint(path: string, manifest: UpdateManifest, cfg: FederationConfig, trainer: Trainer, personal: PersonalAdapter | null): Promise<ProtocolSnapshot> {
  const ck = await loadCheckpoint(path, { copy: true });
  const meta = ck.metadata as Record<string, any>;
  if (!meta || meta.kind !== 'federation') throw new FederationError(`${path} is not a federation checkpoint`);
  if (meta.protocol !== cfg.protocol) throw new FederationError(`${path} was written by the ${meta.protocol} protocol; start with --protocol ${meta.protocol} or a fresh --state-dir`);
  // A different rank or depth changes the trained tensors' set and sizes: say which flag, before the optimizer state
  // fails to fit (a --budget auto node reuses its stored pick: src/node/budget.ts).
  if (typeof meta.loraRank === 'number' && meta.loraRank !== cfg.rank) throw new FederationError(`${path} was written at --rank ${meta.loraRank}, not ${cfg.rank}; start with --rank ${meta.loraRank} or a fresh --state-dir`);
  if (meta.maxDepth !== undefined && (meta.maxDepth ?? null) !== (cfg.maxDepth ?? null)) {
    throw new FederationError(`${path} was written at --max-depth ${meta.maxDepth ?? 'all blocks'}, not ${cfg.maxDepth ?? 'all blocks'}; start with that --max-depth or a fresh --state-dir`);
  }
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
  const snap: ProtocolSnapshot = { ...roundProtocol(cfg.protocol).snapshot.decode(meta, pick, state), protocol: cfg.protocol, state, residual };
  if (meta.optimizer) trainer.optimizer.loadState(joinOptimizerState(meta.optimizer, ck.tensors));
  if (personal && meta.personalOptimizer && (meta.personalKind ?? 'head') !== personal.kind) {
    throw new PersonalError(`${path} holds --personal ${meta.personalKind ?? 'head'} state; start with --personal ${meta.personalKind ?? 'head'} or a fresh --state-dir`);
  }
  if (personal && meta.personalOptimizer) personal.restore(ck.tensors, meta.personalOptimizer as OptimizerStateMeta);
  return snap;
}


