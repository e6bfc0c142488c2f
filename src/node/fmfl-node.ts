import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createMesh, parsePeerAddr, type Mesh } from '../mesh/mesh.ts';
import { loadOrCreateIdentity, ephemeralIdentity } from '../mesh/identity.ts';
import { loadSwarmKey } from '../mesh/swarm-key.ts';
import type { Member, LeaveReason } from '../mesh/membership.ts';
import { atomicWriteFile } from '../util/atomic.ts';
import { createLogger, type Logger } from '../util/log.ts';
import { ConfigError } from '../util/errors.ts';
import { CapabilitiesSchema, parseNodeConfig, type NodeConfig } from './config.ts';
import { NodeInference } from '../infer/node-inference.ts';
import { predictRequestHandler } from '../infer/http.ts';
import { FmflMetrics, NodeStatus, startStatusServer, type StatusServer } from '../ops/index.ts';
import { advertisedCapabilities, measureCapabilities, measureOptionsOf, type MeasuredCapabilities } from './capabilities.ts';

/** File in the state directory listing the members last seen, redialled (with backoff) from the next start. */
export const PEERS_CACHE_FILE = 'peers.json';
/** Most cached peer addresses kept in peers.json. */
export const MAX_CACHED_PEERS = 64;

/** Options of `FmflNode.create` beyond the config object. */
export interface FmflNodeOptions {
  /** Logger (default: from config.logLevel / config.jsonLogs). */
  logger?: Logger;
  /** Mesh timing overrides (tests): gossipsub heartbeat and redial backoff. */
  gossipHeartbeatMs?: number;
  redialBaseMs?: number;
  redialMaxMs?: number;
}

/**
 * An fmfl node built from one validated `NodeConfig`: identity (persisted in `stateDir`), swarm key, mesh,
 * membership, and the peers cache. The CLI and the tests both use it; later issues attach the round protocol
 * and inference to `node.mesh`.
 *
 * Events: `join` (Member), `leave` (Member, LeaveReason).
 */
export class FmflNode extends EventEmitter {
  readonly config: NodeConfig;
  readonly mesh: Mesh;
  readonly log: Logger;
  /** Deploy-time inference (model, infer protocol) when the config has an `infer` section. */
  readonly inference: NodeInference | null;
  /** What the node knows about its federation (GET /status, the dashboard, `fmfl-node status`). */
  readonly status: NodeStatus;
  /** Prometheus metrics (GET /metrics). */
  readonly metrics: FmflMetrics;
  /** The HTTP server (dashboard, /status, /metrics, /predict) while running with `http` configured. */
  http: StatusServer | null = null;
  /** What start() measured (null before start or with `measureCapabilities: false`). */
  measured: MeasuredCapabilities | null = null;
  /** Addresses of members seen since start (and those read from peers.json), most recent last. */
  private readonly knownPeers = new Map<string, string>();

  private constructor(config: NodeConfig, mesh: Mesh, log: Logger, inference: NodeInference | null, metrics: FmflMetrics) {
    super();
    this.inference = inference;
    this.config = config;
    this.mesh = mesh;
    this.log = log;
    this.metrics = metrics;
    this.status = new NodeStatus(mesh, { name: config.name, checkpoint: config.infer?.checkpoint }, metrics);
    // The CLI prints join/leave lines; the log keeps them at debug so a terminal shows each event once.
    mesh.membership.on('join', (m: Member) => {
      this.log.debug({ peer: m.peerId, device: m.capabilities.device }, 'member joined');
      this.rememberPeer(m);
      this.emit('join', m);
    });
    mesh.membership.on('update', (m: Member) => this.rememberPeer(m));
    mesh.membership.on('leave', (m: Member, why: LeaveReason) => {
      this.log.debug({ peer: m.peerId, why }, 'member left');
      this.emit('leave', m, why);
    });
  }

  private rememberPeer(m: Member): void {
    const addr = m.addrs[0];
    if (addr === undefined) return;
    this.knownPeers.delete(m.peerId);
    this.knownPeers.set(m.peerId, addr);
    while (this.knownPeers.size > MAX_CACHED_PEERS) this.knownPeers.delete(this.knownPeers.keys().next().value!);
  }

  /** Validate `config` (throws ConfigError), load or create the identity and swarm key, build the mesh. */
  static async create(config: NodeConfig | unknown, opts: FmflNodeOptions = {}): Promise<FmflNode> {
    const cfg = parseNodeConfig(config);
    const log = opts.logger ?? createLogger({ level: cfg.logLevel, json: cfg.jsonLogs, name: cfg.name ?? 'fmfl-node' });
    const swarmKey = cfg.swarmKey !== undefined ? await loadSwarmKey(cfg.swarmKey) : undefined;
    const httpCfg = cfg.http ?? (cfg.infer?.httpPort !== undefined ? { port: cfg.infer.httpPort, host: cfg.infer.httpHost } : undefined);
    if (httpCfg !== undefined) cfg.http = httpCfg;
    const metrics = new FmflMetrics();
    const identity = cfg.stateDir !== undefined ? await loadOrCreateIdentity(cfg.stateDir) : await ephemeralIdentity();
    if (identity.created && cfg.stateDir !== undefined) log.info({ peer: identity.peerId.toString() }, 'created a new identity');
    const mesh = await createMesh({
      federation: cfg.federation,
      identity,
      listen: cfg.listen,
      peers: cfg.peers,
      bootstrap: cfg.bootstrap,
      mdns: cfg.mdns,
      mdnsIntervalMs: cfg.mdnsIntervalMs,
      swarmKey,
      allow: cfg.allow,
      roster: cfg.roster,
      heartbeatIntervalMs: cfg.heartbeatIntervalMs,
      memberExpiryMs: cfg.memberExpiryMs,
      capabilities: cfg.capabilities,
      gossipHeartbeatMs: opts.gossipHeartbeatMs,
      redialBaseMs: opts.redialBaseMs,
      redialMaxMs: opts.redialMaxMs,
      logger: log,
      metricsRegistry: httpCfg !== undefined ? metrics.registry : undefined,
    });
    metrics.observeMesh(mesh);
    // The node's own HTTP server serves /predict and /healthz, so the inference part starts none.
    const inference = cfg.infer !== undefined ? await NodeInference.create(mesh, { ...cfg.infer, httpPort: undefined }, log) : null;
    return new FmflNode(cfg, mesh, log, inference, metrics);
  }

  /** The node's PeerId as a string. */
  get peerId(): string {
    return this.mesh.peerId.toString();
  }

  /** Full listen multiaddrs with `/p2p/<id>`. */
  multiaddrs(): string[] {
    return this.mesh.multiaddrs();
  }

  /** Start the mesh, then dial the members cached at the last clean stop (redialled with backoff until connected). */
  async start(): Promise<void> {
    if (this.config.measureCapabilities) await this.measure();
    await this.mesh.start();
    await this.inference?.start();
    if (this.config.http !== undefined) {
      try {
        const inf = this.inference;
        this.http = await startStatusServer({
          status: this.status, metrics: this.metrics, host: this.config.http.host, port: this.config.http.port, logger: this.log,
          predict: inf ? predictRequestHandler({ model: inf.model, service: inf.service, logger: this.log }) : null,
        });
      } catch (err) {
        await this.stop();
        throw new ConfigError((err as Error).message, { cause: err });
      }
      this.log.info({ url: this.http.url }, 'status server listening');
    }
    this.log.info({ peer: this.peerId, federation: this.config.federation, addrs: this.multiaddrs() }, 'node started');
    // Cached members are redialled with backoff like --peers (a member that left first comes back at its address
    // later), and appear in dialStatus, so the waiting line names them and why they cannot be reached yet.
    const cached = await this.readPeersCache();
    for (const addr of cached) {
      const id = addr.slice(addr.lastIndexOf('/p2p/') + 5);
      if (!this.knownPeers.has(id)) this.knownPeers.set(id, addr);
      this.mesh.addPeer(addr);
    }
    if (cached.length > 0) this.log.info({ peers: cached.length, file: join(this.config.stateDir!, PEERS_CACHE_FILE) }, `redialling ${cached.length} member${cached.length === 1 ? '' : 's'} seen before (peers.json)`);
  }

  /** Measure device, throughput and exit latency; advertise them (declared maxExitDepth / loraRank cap them). */
  private async measure(): Promise<void> {
    const o = measureOptionsOf(this.config);
    let m: MeasuredCapabilities;
    try {
      m = await measureCapabilities({ ...o, latency: this.inference?.model.latency });
    } catch (err) {
      // A bad backbone or data reference is the federation's configuration error, reported when it starts.
      this.log.warn({ err: String(err) }, 'could not measure capabilities; advertising the declared ones');
      return;
    }
    this.measured = m;
    const declared = this.config.capabilities;
    const caps = advertisedCapabilities(declared, m, { trains: this.config.fl !== undefined, rank: o.rank ?? 8, maxExits: this.config.infer?.maxExits });
    this.mesh.membership.setCapabilities(caps);
    const r = (v: number): number => Math.round(v * 100) / 100;
    this.log.info({
      device: caps.device, trainThroughput: caps.trainThroughput, trainBatch: m.trainBatch, trainSteps: m.trainSteps, backbone: m.backbone,
      exitLatencyMsBatch1: m.exitLatencyMs.batch1.map(r), exitLatencyMsBatch64: m.exitLatencyMs.batch64.map(r),
      maxExitDepth: caps.maxExitDepth, loraRank: caps.loraRank, ms: Math.round(m.ms),
    }, `measured capabilities: device ${caps.device}, ${caps.trainThroughput} training samples/s, exit latency ${m.exitLatencyMs.batch1.map((x) => x.toFixed(2)).join('/')} ms at batch 1`);
    const ignored = (['device', 'trainThroughput'] as const).filter((k) => this.config.capabilities[k] !== CapabilitiesSchema.parse({})[k] && this.config.capabilities[k] !== caps[k]);
    if (ignored.length > 0) this.log.info({ declared: Object.fromEntries(ignored.map((k) => [k, declared[k]])) }, `the profile's ${ignored.join(' and ')} are measured now; the declared values are not advertised`);
  }

  /** Flush state (peers cache), leave the federation, close all connections. Idempotent. */
  async stop(): Promise<void> {
    if (!this.mesh.isRunning) return;
    await this.writePeersCache().catch((err: unknown) => this.log.warn({ err: String(err) }, 'could not write peers cache'));
    await this.http?.close().catch((err: unknown) => this.log.warn({ err: String(err) }, 'status server close failed'));
    this.http = null;
    await this.inference?.stop().catch((err: unknown) => this.log.warn({ err: String(err) }, 'inference stop failed'));
    await this.mesh.stop();
    this.log.info({ peer: this.peerId }, 'node stopped');
  }

  private async readPeersCache(): Promise<string[]> {
    if (this.config.stateDir === undefined) return [];
    try {
      const obj = JSON.parse(await readFile(join(this.config.stateDir, PEERS_CACHE_FILE), 'utf8')) as unknown;
      if (!Array.isArray(obj)) return [];
      const valid = (a: unknown): a is string => {
        if (typeof a !== 'string' || a.length >= 512) return false;
        try {
          return parsePeerAddr(a).peerId.toString() !== this.peerId;
        } catch {
          return false;
        }
      };
      return obj.filter(valid).slice(0, MAX_CACHED_PEERS);
    } catch {
      return [];
    }
  }

  private async writePeersCache(): Promise<void> {
    if (this.config.stateDir === undefined) return;
    // Every member seen (and every cached one), not only those still here: a peer that left first is redialled
    // at the next start instead of leaving an empty cache behind. Most recently seen first.
    for (const m of this.mesh.membership.members()) this.rememberPeer(m);
    const addrs = [...this.knownPeers.values()].reverse().slice(0, MAX_CACHED_PEERS);
    await atomicWriteFile(join(this.config.stateDir, PEERS_CACHE_FILE), JSON.stringify(addrs, null, 2) + '\n');
  }
}
