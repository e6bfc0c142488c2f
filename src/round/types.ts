import type { MeshPort } from './mesh-port.ts';
import type { AggregateOptions } from '../aggregate/index.ts';
import type { ClientDpOptions } from '../privacy/index.ts';
import type { PrototypeTable, TensorMap, UpdateEncodeOptions, UpdateManifest } from '../update/index.ts';
import type { Logger } from '../util/log.ts';
import type { GlobalState } from './state.ts';

import { DEFAULT_GOSSIP_MOMENTUM, FL_DEFAULTS, PROTOCOL_NAMES, type ProtocolName } from './fl-config.ts';

export { DEFAULT_GOSSIP_MOMENTUM, PROTOCOL_NAMES, type ProtocolName };

/** Compression of the updates a node sends (uplink) and, for the leader protocol, of the global (downlink). */
export interface CompressionOptions {
  /** Fraction of entries kept by top-k magnitude (1 = dense). */
  topk: number;
  /** `tensor`: the fraction of every tensor (default); `global`: one magnitude threshold over all tensors. */
  topkScope?: 'global' | 'tensor';
  /** Bits per value: 32 (fp32), 16 (fp16), 8 or 4 (stochastic block quantization). */
  bits: 32 | 16 | 8 | 4 | 1;
  /** Error feedback on the uplink (keep what compression dropped, add it next round). Default true. */
  errorFeedback: boolean;
  /** Bits of the leader's global delta (default 16). Every node applies the decoded delta, so state stays identical. */
  downlinkBits: 32 | 16 | 8 | 4 | 1;
  /**
   * Error feedback on the downlink (leader protocol): the round step's encoding error is carried into the next step;
   * the residual is replicated server state (protocols/round.md "Compressed downlink"). Default false.
   */
  downlinkErrorFeedback?: boolean;
  /** Brotli over the encoded payload. */
  brotli: boolean;
}

/**
 * Default uplink (the schema's defaults, src/round/fl-config.ts): every value as a scaled sign (1 bit + a block scale)
 * with error feedback. On the 8-node Fashion-MNIST reference run with FedAvgM it ended within 1 point of dense fp32
 * updates (top-10% 8-bit: 2.6 points under) at fewer bytes than top-10% 8-bit: AdamW deltas have near-uniform
 * magnitudes, which top-k serves badly.
 */
export const DEFAULT_COMPRESSION: CompressionOptions = {
  topk: FL_DEFAULTS.topk, topkScope: FL_DEFAULTS.topkScope, bits: FL_DEFAULTS.bits, errorFeedback: FL_DEFAULTS.errorFeedback,
  downlinkBits: FL_DEFAULTS.downlinkBits, downlinkErrorFeedback: FL_DEFAULTS.downlinkErrorFeedback, brotli: FL_DEFAULTS.brotli,
};

/** What a node contributes after its local training in a round. */
export interface LocalContribution {
  /** The locally trained tensors (absolute values). */
  tensors: TensorMap;
  /** Local prototype statistics computed with the trained model. */
  prototypes: PrototypeTable[];
  /** Training samples behind it (FedAvg weight). */
  sampleCount: number;
  /** Heterogeneous fleets (leader protocol): this node's LoRA rank and depth budget; absent: the global's rank, every tensor. */
  budget?: { rank: number; trained?: readonly string[] };
}

/** How one round ended on this node. */
export interface RoundOutcome {
  round: number;
  /** How this node reached the round's model. */
  via: 'led' | 'applied' | 'synced' | 'mixed';
  /** Publisher's rank in the leader order (leader protocol). */
  leaderRank?: number;
  leader?: string;
  /** Contributors aggregated (leader protocol) or neighbours mixed (gossip). */
  contributors: string[];
  /** Application payload bytes this node published and received in the round. */
  bytesUp: number;
  bytesDown: number;
  /** Bytes of this node's own update message (part of bytesUp; a leader's bytesUp also holds its broadcast). */
  updateBytes?: number;
  /** Gossip: squared L2 distance between this node's model and the mean of its replicas (per element). */
  consensusDistance?: number;
}

/** Everything a protocol needs from the node. */
export interface RoundContext {
  /** The protocol's view of the mesh (src/mesh's Mesh, an in-memory fake, or a fault-injecting decorator). */
  mesh: MeshPort;
  federation: string;
  selfId: string;
  manifest: UpdateManifest;
  loraRank: number;
  /** Live members (PeerId strings, including self). */
  members(): string[];
  logger: Logger;
  /** Seed for stochastic quantization. */
  seed: number;
}

export interface RoundOptions {
  compression: CompressionOptions;
  /** Aggregation rule (src/aggregate registry name) and its options. */
  aggregator: string;
  aggregatorOptions?: AggregateOptions;
  /**
   * Decay the server learning rate (aggregatorOptions.serverLr) over the federation: round r of `rounds` uses
   * 1 + (serverLr − 1)·½(1 + cos(π (r − 1) / (rounds − 1))), from serverLr in round 1 to 1 (plain averaging) in the last.
   */
  serverLrDecay?: { rounds: number };
  /**
   * Leader: the fewest contributions a round may close with, as a fraction q of the roster: ceil(q × roster size).
   * Default (undefined): a majority of the roster, floor(R/2) + 1, so that two sides of a partition can never both
   * close a round (the minority pauses). Lower values trade that safety for liveness. Without a roster, R is the live view.
   */
  quorum?: number;
  /**
   * Leader: the most the leader waits for updates after publishing its own (default 60 s). The actual deadline adapts:
   * p90 of measured update arrival delays × 2, within [minRoundTimeoutMs, roundTimeoutMs].
   */
  roundTimeoutMs: number;
  /** Leader: lower bound of the adaptive deadline (default min(2000, roundTimeoutMs)). */
  minRoundTimeoutMs?: number;
  /** Leader: the federation's last round (`--rounds`): a pulled state beyond it is refused. */
  maxRounds?: number;
  /** Leader: extra wait per backup rank before a backup leader takes over (default 15 s). */
  leaderTimeoutMs: number;
  /**
   * Leader: the round's verifying committee, its first `committee` ranks over the roster (members that are down
   * skipped): only they pull every update and recompute the step; the others apply the step they pull over
   * `round.step` only once a majority of the committee attested it (protocols/round.md "Verifying committee").
   * Undefined or 0: every member verifies (the default).
   */
  committee?: number;
  /** Gossip: consensus step size gamma of CHOCO-SGD (default 0: replicas are averaged, public copies accumulate). */
  gossipGamma: number;
  /**
   * Gossip: heavy-ball momentum on the node's averaged model (default 0.6, the leader's FedAvgM momentum): local
   * training starts from m_t + β·(m_t − m_{t−1}) and the extrapolation travels with the node's progress, so the
   * network average follows the FedAvgM recursion without a leader.
   */
  gossipMomentum?: number;
  /** Client-level DP on each update (off when undefined). */
  dp?: ClientDpOptions;
  /**
   * Secure aggregation (leader protocol, protocols/round.md "Secure aggregation"): members publish fixed-point,
   * double-masked deltas clipped element-wise to [-clip, clip]; the leader learns only their mean. No compression
   * and no prototype statistics are exchanged; the aggregator sees a single uniform-mean input.
   */
  secagg?: { clip: number };
}

/** Round options from the schema's defaults (src/round/fl-config.ts). */
export const DEFAULT_ROUND_OPTIONS: RoundOptions = {
  compression: DEFAULT_COMPRESSION,
  aggregator: FL_DEFAULTS.aggregator,
  roundTimeoutMs: FL_DEFAULTS.roundTimeoutMs,
  leaderTimeoutMs: FL_DEFAULTS.leaderTimeoutMs,
  gossipGamma: FL_DEFAULTS.gossipGamma,
  gossipMomentum: FL_DEFAULTS.gossipMomentum,
};

/** Persistent part of a protocol (written atomically with the node's checkpoint every round). */
export interface ProtocolSnapshot {
  protocol: ProtocolName;
  state: GlobalState;
  /** Error-feedback residual (uplink). */
  residual: Map<string, Float64Array>;
  /** Gossip: this node's public model and its round. */
  publicModel?: { round: number; tensors: TensorMap };
  /** Server optimizer state (FedAdam/FedYogi), leader protocol. */
  serverOpt?: { step: number; m: Map<string, Float64Array>; v: Map<string, Float64Array> };
  /** Leader protocol: the state's certificate (encoded Attestations of a roster majority), when it has one. */
  certificate?: Uint8Array[];
  /** Leader protocol: whether serverOpt is the federation's replicated server state for `state` (false after a state pull). */
  serverKnown?: boolean;
}

/**
 * A serverless round protocol. The node alternates: train locally from `trainingStart()`, then `exchange()`,
 * which resolves once this node holds the round's model. Failures of peers are handled inside; `exchange`
 * rejects only when this node is stopped.
 */
export interface RoundProtocol {
  readonly name: ProtocolName;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Rounds completed (global version for the leader protocol). */
  readonly round: number;
  /** The tensors local training of the next round starts from. */
  trainingStart(): TensorMap;
  /** The model this node evaluates and serves (global for leader, local for gossip). */
  model(): TensorMap;
  /** Global prototype statistics to use in the loss and for prototype prediction. */
  prototypes(): PrototypeTable[];
  exchange(local: LocalContribution): Promise<RoundOutcome>;
  snapshot(): ProtocolSnapshot;
  /** Pull newer state from members at start (restart, late join); true if the state advanced. Optional. */
  catchUp?(): Promise<boolean>;
  /**
   * After the last round: keep serving the final state to stragglers for a bounded grace period; true when this node's
   * final state was replaced meanwhile (an uncertified one by the certified one). Optional.
   */
  finish?(): Promise<boolean>;
  /** Gossip topics this protocol publishes on (the node waits until they have subscribers before round 1). */
  readonly topics: readonly string[];
}

export type { UpdateEncodeOptions };
