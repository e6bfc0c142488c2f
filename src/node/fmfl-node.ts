import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createMesh, type Mesh } from '../mesh/mesh.ts';
import { loadOrCreateIdentity, ephemeralIdentity } from '../mesh/identity.ts';
import { loadSwarmKey } from '../mesh/swarm-key.ts';
import type { Member, LeaveReason } from '../mesh/membership.ts';
import { atomicWriteFile } from '../util/atomic.ts';
import { createLogger, type Logger } from '../util/log.ts';
import { parseNodeConfig, type NodeConfig } from './config.ts';
import { NodeInference } from '../infer/node-inference.ts';

/** File in the state directory listing the members last seen, redialled once at the next start. */
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
  /** Deploy-time inference (model, infer protocol, HTTP endpoint) when the config has an `infer` section. */
  readonly inference: NodeInference | null;

  private constructor(config: NodeConfig, mesh: Mesh, log: Logger, inference: NodeInference | null = null) {
    super();
    this.inference = inference;
    this.config = config;
    this.mesh = mesh;
    this.log = log;
    mesh.membership.on('join', (m: Member) => {
      this.log.info({ peer: m.peerId, device: m.capabilities.device }, 'member joined');
      this.emit('join', m);
    });
    mesh.membership.on('leave', (m: Member, why: LeaveReason) => {
      this.log.info({ peer: m.peerId, why }, 'member left');
      this.emit('leave', m, why);
    });
  }

  /** Validate `config` (throws ConfigError), load or create the identity and swarm key, build the mesh. */
  static async create(config: NodeConfig | unknown, opts: FmflNodeOptions = {}): Promise<FmflNode> {
    const cfg = parseNodeConfig(config);
    const log = opts.logger ?? createLogger({ level: cfg.logLevel, json: cfg.jsonLogs, name: cfg.name ?? 'fmfl-node' });
    const swarmKey = cfg.swarmKey !== undefined ? await loadSwarmKey(cfg.swarmKey) : undefined;
    const identity = cfg.stateDir !== undefined ? await loadOrCreateIdentity(cfg.stateDir) : await ephemeralIdentity();
    if (identity.created && cfg.stateDir !== undefined) log.info({ peer: identity.peerId.toString() }, 'created a new identity');
    const mesh = await createMesh({
      federation: cfg.federation,
      identity,
      listen: cfg.listen,
      peers: cfg.peers,
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
    });
    const inference = cfg.infer !== undefined ? await NodeInference.create(mesh, cfg.infer, log) : null;
    return new FmflNode(cfg, mesh, log, inference);
  }

  /** The node's PeerId as a string. */
  get peerId(): string {
    return this.mesh.peerId.toString();
  }

  /** Full listen multiaddrs with `/p2p/<id>`. */
  multiaddrs(): string[] {
    return this.mesh.multiaddrs();
  }

  /** Start the mesh, then dial (once, best effort) the members cached at the last clean stop. */
  async start(): Promise<void> {
    await this.mesh.start();
    await this.inference?.start();
    this.log.info({ peer: this.peerId, federation: this.config.federation, addrs: this.multiaddrs() }, 'node started');
    for (const addr of await this.readPeersCache()) {
      void this.mesh.dial(addr).catch((err: unknown) => this.log.debug({ addr, err: String(err) }, 'cached peer unreachable'));
    }
  }

  /** Flush state (peers cache), leave the federation, close all connections. Idempotent. */
  async stop(): Promise<void> {
    if (!this.mesh.isRunning) return;
    await this.writePeersCache().catch((err: unknown) => this.log.warn({ err: String(err) }, 'could not write peers cache'));
    await this.inference?.stop().catch((err: unknown) => this.log.warn({ err: String(err) }, 'inference stop failed'));
    await this.mesh.stop();
    this.log.info({ peer: this.peerId }, 'node stopped');
  }

  private async readPeersCache(): Promise<string[]> {
    if (this.config.stateDir === undefined) return [];
    try {
      const obj = JSON.parse(await readFile(join(this.config.stateDir, PEERS_CACHE_FILE), 'utf8')) as unknown;
      if (!Array.isArray(obj)) return [];
      return obj.filter((a): a is string => typeof a === 'string' && a.length < 512 && a.includes('/p2p/')).slice(0, MAX_CACHED_PEERS);
    } catch {
      return [];
    }
  }

  private async writePeersCache(): Promise<void> {
    if (this.config.stateDir === undefined) return;
    const addrs = this.mesh.membership
      .members()
      .flatMap((m) => m.addrs.slice(0, 1))
      .slice(0, MAX_CACHED_PEERS);
    await atomicWriteFile(join(this.config.stateDir, PEERS_CACHE_FILE), JSON.stringify(addrs, null, 2) + '\n');
  }
}
