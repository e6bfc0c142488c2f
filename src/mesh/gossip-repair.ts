/**
 * Reopening gossipsub outbound streams that failed (issue 17).
 *
 * @chainsafe/libp2p-gossipsub (14.x) opens one outbound stream per connected peer, when the registrar reports the
 * connection or the peer opens its own stream, and on failure only logs (`createOutboundStream`: "TODO make this
 * behavior more robust"). Without that stream this node sends the peer nothing: no subscriptions, no heartbeats,
 * no updates, until the connection is replaced. On an event loop lagging seconds (64 meshes in one process) the
 * stream's protocol negotiation times out for some pairs: in a 64-node in-process mesh 126 of 4,032 connection ends
 * stayed without one for minutes and the membership views never filled. This timer finds open connections whose
 * peer has no outbound gossipsub stream and hands them to gossipsub's own new-connection path again.
 */
import type { Libp2p } from '@libp2p/interface';

/** The gossipsub internals used here (14.x; private in its typings, stable across 13-14). */
interface GossipsubInternals {
  isStarted(): boolean;
  readonly peers: Map<string, unknown>;
  readonly streamsOutbound: Map<string, unknown>;
  onPeerConnected(peerId: unknown, connection: unknown): void;
  createOutboundStream(peerId: unknown, connection: unknown): Promise<void>;
}

/**
 * Starts the repair every `everyMs`; returns the stop function. A connection younger than `graceMs` (the stream
 * negotiation deadline: gossipsub's own first opening is still under way) is left alone. Counts each reopening
 * attempt in `stats.attempts`.
 */
export function startGossipStreamRepair(
  libp2p: Libp2p, pubsub: unknown, everyMs: number, graceMs: number, stats: { attempts: number } = { attempts: 0 },
): () => void {
  const ps = pubsub as GossipsubInternals;
  const inflight = new Set<string>();
  const tick = (): void => {
    if (!ps.isStarted()) return;
    for (const conn of libp2p.getConnections()) {
      const id = conn.remotePeer.toString();
      if (conn.status !== 'open' || ps.streamsOutbound.has(id) || inflight.has(id)) continue;
      if (Date.now() - conn.timeline.open < graceMs) continue;
      stats.attempts++;
      if (!ps.peers.has(id)) {
        // Never added (the registrar's notice was lost): the library's own new-connection path adds and queues it.
        ps.onPeerConnected(conn.remotePeer, conn);
        continue;
      }
      // Straight to the stream opening: gossipsub's queue runs one opening at a time per node and one that hangs
      // would hold every later one. At most one repair per peer is in flight; the opening itself checks again.
      inflight.add(id);
      void ps.createOutboundStream(conn.remotePeer, conn).catch(() => {}).finally(() => inflight.delete(id));
    }
  };
  const timer = setInterval(tick, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
