/**
 * Reopening gossipsub outbound streams that failed (issue 17).
 *
 * @chainsafe/libp2p-gossipsub (14.x) opens one outbound stream per connected peer, when the registrar reports the
 * connection or the peer opens its own stream, and on failure only logs (`createOutboundStream`: "TODO make this
 * behavior more robust"). Without that stream this node sends the peer nothing: no subscriptions, no heartbeats,
 * no updates, until the connection is replaced. On an event loop lagging seconds (64 meshes in one process) the
 * stream's protocol negotiation times out for some pairs: in a 64-node in-process mesh 126 of 4,032 connection ends
 * stayed without one for minutes and the membership views never filled. This timer finds open connections whose
 * peer has no usable outbound gossipsub stream and opens one again (gossipsub's own opening, at most one per peer at
 * a time).
 */
import type { Libp2p } from '@libp2p/interface';

/** The gossipsub internals used here (14.x; private in its typings, stable across 13-14). */
interface GossipsubInternals {
  isStarted(): boolean;
  readonly peers: Map<string, unknown>;
  readonly streamsOutbound: Map<string, { rawStream?: { status?: string; writeStatus?: string }; close(): Promise<void> }>;
  onPeerConnected(peerId: unknown, connection: unknown): void;
  createOutboundStream(peerId: { toString(): string }, connection: unknown): Promise<void>;
}

/** Whether gossipsub's outbound stream to a peer can still carry messages (a stream the peer closed cannot). */
function usable(s: { rawStream?: { status?: string; writeStatus?: string } }): boolean {
  const st = s.rawStream;
  return st === undefined || (st.status === 'open' && st.writeStatus !== 'closing' && st.writeStatus !== 'closed');
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
  // One opening per peer at a time, whoever asks (gossipsub's queue or this repair): two concurrent openings would
  // both pass gossipsub's "already has one" check, the peer would keep the later as its inbound stream and close the
  // other, and this node might keep the closed one.
  const inflight = new Map<string, Promise<void>>();
  const open = ps.createOutboundStream.bind(ps);
  ps.createOutboundStream = (peerId, connection) => {
    const id = peerId.toString();
    const running = inflight.get(id);
    if (running !== undefined) return running;
    const p = open(peerId, connection).catch(() => {}).finally(() => inflight.delete(id));
    inflight.set(id, p);
    return p;
  };
  const tick = (): void => {
    if (!ps.isStarted()) return;
    for (const conn of libp2p.getConnections()) {
      const id = conn.remotePeer.toString();
      if (conn.status !== 'open' || inflight.has(id)) continue;
      const s = ps.streamsOutbound.get(id);
      if (s !== undefined && usable(s)) continue;
      if (Date.now() - conn.timeline.open < graceMs) continue;
      if (s !== undefined) {
        ps.streamsOutbound.delete(id);
        void s.close().catch(() => {});
      }
      stats.attempts++;
      if (!ps.peers.has(id)) {
        // Never added (the registrar's notice was lost): the library's own new-connection path adds and queues it.
        ps.onPeerConnected(conn.remotePeer, conn);
        continue;
      }
      // Straight to the stream opening: gossipsub's queue runs one opening at a time per node and one that hangs
      // would hold every later one.
      void ps.createOutboundStream(conn.remotePeer, conn);
    }
  };
  const timer = setInterval(tick, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
