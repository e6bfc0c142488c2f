/**
 * Peer discovery: `@libp2p/bootstrap` (a list of full multiaddrs, dialled at start; the mesh also redials them with
 * backoff like `--peers`) and `@libp2p/mdns` (multicast DNS on the LAN, loopback included). Discovery only finds
 * candidates: every connection still passes the private-network handshake (swarm key) and the connection gater
 * (allowlist / roster), so a discovered outsider is refused exactly like a dialled one.
 */
import { bootstrap } from '@libp2p/bootstrap';
import { mdns } from '@libp2p/mdns';
import type { Libp2p, PeerDiscovery, PeerId, PeerInfo } from '@libp2p/interface';
import type { Logger } from '../util/log.ts';
import { classifyDialError, type DialDiagnosis } from './dial-errors.ts';

/** mDNS service name of fmfl nodes (not libp2p's generic `_p2p._udp.local`, so other libp2p apps are not dialled). */
export const MDNS_SERVICE_TAG = '_fmfl._udp.local';
/** Default period of mDNS queries (ms). */
export const DEFAULT_MDNS_INTERVAL_MS = 10_000;

export interface DiscoveryOptions {
  /** Bootstrap peers: full multiaddrs ending in `/p2p/<id>`. */
  bootstrap?: string[];
  /** Find peers by multicast DNS on the local network. */
  mdns?: boolean;
  /** mDNS query period (default {@link DEFAULT_MDNS_INTERVAL_MS}). */
  mdnsIntervalMs?: number;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- libp2p's Components type is internal to libp2p
type DiscoveryFactory = (components: any) => PeerDiscovery;

/** The `peerDiscovery` services of createLibp2p for these options (empty: no discovery). */
export function discoveryServices(o: DiscoveryOptions): DiscoveryFactory[] {
  const out: DiscoveryFactory[] = [];
  if (o.bootstrap !== undefined && o.bootstrap.length > 0) out.push(bootstrap({ list: o.bootstrap }) as unknown as DiscoveryFactory);
  if (o.mdns === true) out.push(mdns({ serviceTag: MDNS_SERVICE_TAG, interval: o.mdnsIntervalMs ?? DEFAULT_MDNS_INTERVAL_MS }) as unknown as DiscoveryFactory);
  return out;
}

/** A discovered peer this node could not connect to, with the likely cause. */
export interface DiscoveryDialFailure {
  peer: string;
  diagnosis: DialDiagnosis;
}

/**
 * Dials peers that discovery reports (libp2p 2.x does not dial them by itself): once per report, only when not
 * connected, not already dialling, and admitted by `permitted` (allowlist, block list). Failures are logged at info
 * once per (peer, cause) and handed to `onFailure`.
 */
export class DiscoveryDialer {
  private readonly dialing = new Set<string>();
  private readonly lastCause = new Map<string, string>();
  private running = false;

  constructor(
    private readonly libp2p: Pick<Libp2p, 'addEventListener' | 'removeEventListener' | 'dial' | 'getConnections'> & { peerId: PeerId },
    private readonly o: {
      permitted: (peerId: string) => boolean;
      /** Peers the mesh dials itself (configured and bootstrap peers, with backoff). */
      managed: (peerId: string) => boolean;
      privateNetwork: boolean;
      log: Logger;
      onFailure?: (f: DiscoveryDialFailure) => void;
    },
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.libp2p.addEventListener('peer:discovery', this.onDiscovery);
  }

  stop(): void {
    this.running = false;
    this.libp2p.removeEventListener('peer:discovery', this.onDiscovery);
  }

  private readonly onDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    const id = evt.detail.id;
    const key = id.toString();
    if (!this.running || id.equals(this.libp2p.peerId) || this.dialing.has(key) || this.o.managed(key)) return;
    if (this.libp2p.getConnections(id).length > 0) return;
    if (!this.o.permitted(key)) {
      this.o.log.debug({ peer: key }, 'discovered a peer that is not allowlisted; not dialling it');
      return;
    }
    this.dialing.add(key);
    this.libp2p
      .dial(id)
      .then(() => {
        this.lastCause.delete(key);
        this.o.log.debug({ peer: key }, 'connected to a discovered peer');
      })
      .catch((err: unknown) => {
        if (!this.running) return;
        const d = classifyDialError(err, { swarmKey: this.o.privateNetwork });
        if (this.lastCause.get(key) !== d.cause) this.o.log.info({ peer: key, cause: d.hint }, 'cannot connect to a discovered peer');
        this.lastCause.set(key, d.cause);
        this.o.onFailure?.({ peer: key, diagnosis: d });
      })
      .finally(() => this.dialing.delete(key));
  };
}
