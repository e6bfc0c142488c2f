/**
 * Connection management of configured peers (`--peers`, bootstrap peers, `Mesh.addPeer`): dial at start, redial with
 * exponential backoff whenever the connection drops, and explain each distinct dial failure once.
 */
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import type { Libp2p, PeerId } from '@libp2p/interface';
import type { Logger } from '../util/log.ts';
import { classifyDialError, CLOSED_BY_PEER, QUICK_CLOSE_MS, type DialDiagnosis } from './dial-errors.ts';
import { MeshError } from './errors.ts';
import { REDIAL_FACTOR } from './constants.ts';
import type { DialState } from './mesh-types.ts';

/** Parse and check a `--peers` entry: it must be a multiaddr ending in `/p2p/<PeerId>`. */
export function parsePeerAddr(s: string): { addr: Multiaddr; peerId: PeerId } {
  let addr: Multiaddr;
  try {
    addr = multiaddr(s);
  } catch (err) {
    throw new MeshError('BAD_PEER_ADDR', `"${s}" is not a multiaddr (${(err as Error).message})`, { cause: err });
  }
  const id = addr.getPeerId();
  if (id === null) {
    throw new MeshError('BAD_PEER_ADDR', `"${s}" has no /p2p/<PeerId> suffix: copy the full address the peer printed at start`);
  }
  let peerId: PeerId;
  try {
    peerId = peerIdFromString(id);
  } catch (err) {
    throw new MeshError('BAD_PEER_ADDR', `"${s}" carries an invalid PeerId`, { cause: err });
  }
  return { addr, peerId };
}

interface Redial {
  addr: Multiaddr;
  peerId: PeerId;
  attempt: number;
  timer?: NodeJS.Timeout;
  /** Dials tried since the last connection. */
  tries: number;
  /** The last dial failure, explained (cleared on connect). */
  last?: DialDiagnosis;
  connectedMs?: number;
}

export interface RedialerOptions {
  baseMs: number;
  maxMs: number;
  /** A swarm key is configured (dial failures are explained with it in mind). */
  privateNetwork: boolean;
  /** Peers refused by `Mesh.block`: not dialled until unblocked. */
  blocked: ReadonlySet<string>;
  log: Logger;
  /** Whether the mesh runs and is not stopping (dials happen only then). */
  active: () => boolean;
}

/** The configured peers of one mesh and their redial timers. */
export class Redialer {
  private readonly redials = new Map<string, Redial>();

  constructor(
    private readonly libp2p: Libp2p,
    private readonly o: RedialerOptions,
  ) {}

  /** Whether `id` is a configured peer. */
  has(id: string): boolean {
    return this.redials.has(id);
  }

  /** Add a configured peer (not dialled until `dial`/`dialAll`); false when it was configured already. */
  add(addr: Multiaddr, peerId: PeerId): boolean {
    const id = peerId.toString();
    if (this.redials.has(id)) return false;
    this.redials.set(id, { addr, peerId, attempt: 0, tries: 0 });
    return true;
  }

  /** Dial one configured peer now. */
  dial(id: string): void {
    const r = this.redials.get(id);
    if (r !== undefined) void this.dialConfigured(r);
  }

  /** Dial every configured peer now. */
  dialAll(): void {
    for (const r of this.redials.values()) void this.dialConfigured(r);
  }

  /** Cancel every pending redial. */
  stop(): void {
    for (const r of this.redials.values()) {
      clearTimeout(r.timer);
      r.timer = undefined;
    }
  }

  /** A connection to `id` opened: reset its backoff. */
  connected(id: string): void {
    const r = this.redials.get(id);
    if (r === undefined) return;
    r.attempt = 0;
    r.tries = 0;
    r.connectedMs = Date.now();
    clearTimeout(r.timer);
    r.timer = undefined;
  }

  /** The connection to `id` closed: redial a configured peer with backoff (a quick close counts as a failure). */
  disconnected(id: string): void {
    const r = this.redials.get(id);
    if (r === undefined || !this.o.active()) return;
    if (r.connectedMs !== undefined && Date.now() - r.connectedMs < QUICK_CLOSE_MS) this.dialFailed(r, CLOSED_BY_PEER);
    r.connectedMs = undefined;
    this.scheduleRedial(r);
  }

  /** A block on `id` was lifted: redial at once. */
  unblocked(id: string): void {
    const r = this.redials.get(id);
    if (r === undefined || !this.o.active()) return;
    clearTimeout(r.timer);
    r.timer = undefined;
    r.attempt = 0;
    void this.dialConfigured(r);
  }

  status(): DialState[] {
    return [...this.redials.values()].map((r) => ({
      peer: r.peerId.toString(),
      addr: r.addr.toString(),
      connected: this.libp2p.getConnections(r.peerId).length > 0,
      attempts: r.tries,
      cause: r.last?.hint ?? null,
    }));
  }

  /** Log a configured peer's dial failure at info once per distinct cause (repeats at debug). */
  private dialFailed(r: Redial, d: DialDiagnosis, err?: unknown): void {
    const fields = { peer: r.peerId.toString(), addr: r.addr.toString(), cause: d.hint };
    if (r.last?.cause !== d.cause) this.o.log.info(fields, 'cannot connect to a configured peer; will retry');
    else this.o.log.debug({ ...fields, err: err === undefined ? undefined : String(err) }, 'dial failed again');
    r.last = d;
  }

  private scheduleRedial(r: Redial): void {
    if (!this.o.active() || r.timer !== undefined) return;
    const delay = Math.min(this.o.maxMs, this.o.baseMs * REDIAL_FACTOR ** r.attempt);
    r.attempt = Math.min(r.attempt + 1, 30);
    r.timer = setTimeout(() => {
      r.timer = undefined;
      void this.dialConfigured(r);
    }, delay);
    r.timer.unref();
  }

  private async dialConfigured(r: Redial): Promise<void> {
    if (!this.o.active()) return;
    if (this.libp2p.getConnections(r.peerId).length > 0) return;
    if (this.o.blocked.has(r.peerId.toString())) {
      this.scheduleRedial(r);
      return;
    }
    r.tries++;
    try {
      await this.libp2p.dial(r.addr);
      this.o.log.debug({ peer: r.peerId.toString() }, 'dialled configured peer');
    } catch (err) {
      if (!this.o.active()) return;
      this.dialFailed(r, classifyDialError(err, { swarmKey: this.o.privateNetwork }), err);
      this.scheduleRedial(r);
    }
  }
}
