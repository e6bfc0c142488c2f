/**
 * fmfl's Prometheus metrics (prom-client), one registry per node. libp2p's own metrics
 * (@libp2p/prometheus-metrics: libp2p_*, plus process/nodejs defaults) are registered into the same registry by
 * the mesh, so one `GET /metrics` scrape returns both. Names and labels are listed in the README
 * ("Operating a federation").
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { RefusalReason } from '../mesh/errors.ts';
import type { Mesh } from '../mesh/mesh.ts';
import type { RoundMetrics } from '../round/federation.ts';

/** Buckets of `fmfl_round_duration_seconds` (seconds). */
export const ROUND_DURATION_BUCKETS = [0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600];

/** The metrics of one node; gauges derived from the mesh are computed at scrape time. */
export class FmflMetrics {
  readonly registry: Registry;
  private readonly rounds: Counter<'protocol' | 'via'>;
  private readonly roundDuration: Histogram<'protocol'>;
  private readonly updateBytes: Counter<'direction'>;
  private readonly refusals: Counter<'reason' | 'topic'>;
  private readonly accuracy: Gauge<'exit'>;
  private readonly ensembleAccuracy: Gauge;
  private readonly trainLoss: Gauge;
  private readonly stepsPerSecond: Gauge;
  private readonly version: Gauge;
  private readonly contributors: Gauge;
  /** Registered at the first value: absent from a scrape without DP / outside gossip (a 0 would read as a measurement). */
  private epsilon: Gauge | null = null;
  private consensus: Gauge | null = null;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.rounds = new Counter({ name: 'fmfl_rounds_total', help: 'Federation rounds completed by this node, by round protocol and how the node reached the round model (led, applied, synced, mixed)', labelNames: ['protocol', 'via'], registers });
    this.roundDuration = new Histogram({ name: 'fmfl_round_duration_seconds', help: 'Wall time of one round on this node: local training, exchange and evaluation', labelNames: ['protocol'], buckets: ROUND_DURATION_BUCKETS, registers });
    this.updateBytes = new Counter({ name: 'fmfl_update_bytes_total', help: 'Round payload bytes this node published (up) and received (down)', labelNames: ['direction'], registers });
    this.refusals = new Counter({ name: 'fmfl_refusals_total', help: 'Inbound messages and stream requests refused, by reason and topic or stream protocol', labelNames: ['reason', 'topic'], registers });
    this.accuracy = new Gauge({ name: 'fmfl_accuracy', help: 'Test accuracy (0..1) of the current model at each exit (1-based), on this node\'s test slice', labelNames: ['exit'], registers });
    this.ensembleAccuracy = new Gauge({ name: 'fmfl_ensemble_accuracy', help: 'Test accuracy (0..1) of the mean over all exits', registers });
    this.trainLoss = new Gauge({ name: 'fmfl_train_loss', help: 'Mean local training loss of the last round', registers });
    this.stepsPerSecond = new Gauge({ name: 'fmfl_training_steps_per_second', help: 'Local training steps per second in the last round', registers });
    this.version = new Gauge({ name: 'fmfl_global_version', help: 'Rounds completed (global model version)', registers });
    this.contributors = new Gauge({ name: 'fmfl_round_contributors', help: 'Updates aggregated (leader) or neighbours mixed (gossip) in the last round', registers });
  }

  /** Gauges read from the mesh at scrape time: members, connections, raw transport bytes. */
  observeMesh(mesh: Mesh): void {
    const registers = [this.registry];
    new Gauge({ name: 'fmfl_members', help: 'Members in this node\'s view, itself included', registers, collect() { this.set(mesh.membership.memberIds(true).length); } });
    new Gauge({ name: 'fmfl_connected_peers', help: 'Peers with an open libp2p connection to this node', registers, collect() { this.set(mesh.connectedPeers().length); } });
    new Gauge({
      name: 'fmfl_wire_bytes', help: 'Raw transport bytes (after encryption and muxing) since start, by direction (in, out)', labelNames: ['direction'], registers,
      collect() {
        this.set({ direction: 'in' }, mesh.wire.bytesIn);
        this.set({ direction: 'out' }, mesh.wire.bytesOut);
      },
    });
    mesh.on('refused', (ev: { reason: RefusalReason; where: string }) => this.refusal(ev.reason, ev.where));
  }

  /** Count one refusal. */
  refusal(reason: RefusalReason, where: string): void {
    this.refusals.inc({ reason: RefusalReason[reason] ?? String(reason), topic: where });
  }

  /** Record a completed round. */
  round(m: RoundMetrics, stepsPerSecond?: number): void {
    this.rounds.inc({ protocol: m.protocol, via: m.via });
    this.roundDuration.observe({ protocol: m.protocol }, m.roundMs / 1000);
    this.updateBytes.inc({ direction: 'up' }, m.bytesUp);
    this.updateBytes.inc({ direction: 'down' }, m.bytesDown);
    m.accuracy.forEach((a, i) => this.accuracy.set({ exit: String(i + 1) }, a));
    this.ensembleAccuracy.set(m.ensembleAccuracy);
    if (Number.isFinite(m.trainLoss)) this.trainLoss.set(m.trainLoss);
    if (stepsPerSecond !== undefined && Number.isFinite(stepsPerSecond)) this.stepsPerSecond.set(stepsPerSecond);
    this.version.set(m.version);
    this.contributors.set(m.contributors);
    const registers = [this.registry];
    if (m.epsilon !== undefined && Number.isFinite(m.epsilon)) {
      this.epsilon ??= new Gauge({ name: 'fmfl_dp_epsilon', help: 'Client-level differential privacy: epsilon spent so far (at the configured delta); absent without DP', registers });
      this.epsilon.set(m.epsilon);
    }
    if (m.consensusDistance !== undefined && Number.isFinite(m.consensusDistance)) {
      this.consensus ??= new Gauge({ name: 'fmfl_consensus_distance', help: 'Gossip: squared L2 distance per element between this node\'s model and the mean of its replicas; absent with the leader protocol', registers });
      this.consensus.set(m.consensusDistance);
    }
  }

  /** Prometheus text exposition of everything in the registry. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
