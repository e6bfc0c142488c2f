/**
 * The `ops.status` sync method (protocols/sync.md): a member answers with its round, phase and the PeerIds it is
 * connected to, so every node's dashboard can draw who is connected to whom. Answers from peers are hostile
 * input: size-capped, strict-schema JSON, every PeerId parsed; anything else is refused and counted.
 */
import { z } from 'zod';
import { peerIdFromString } from '@libp2p/peer-id';
import { RefusalReason } from '../mesh/errors.ts';
import type { Mesh } from '../mesh/mesh.ts';
import { MAX_PEER_STATUS_BYTES, MAX_PEER_STATUS_NEIGHBOURS, PEER_STATUS_METHOD, PEER_STATUS_TIMEOUT_MS, PEER_STATUS_VERSION } from './limits.ts';

/** What a node is doing in the federation. */
export const PHASES = ['idle', 'waiting', 'training', 'exchanging', 'done', 'stopped'] as const;
export type Phase = (typeof PHASES)[number];

/** A peer's answer to `ops.status`. */
export interface PeerStatus {
  v: typeof PEER_STATUS_VERSION;
  /** Rounds the peer completed (global version), null when it does not federate. */
  round: number | null;
  phase: Phase;
  /** PeerIds the peer has a connection to. */
  neighbours: string[];
}

const PeerStatusSchema = z
  .object({
    v: z.literal(PEER_STATUS_VERSION),
    round: z.number().int().min(0).max(1e9).nullable(),
    phase: z.enum(PHASES),
    neighbours: z.array(z.string().min(1).max(128)).max(MAX_PEER_STATUS_NEIGHBOURS),
  })
  .strict();

/** Parse a peer status answer; returns the refusal reason when it is not acceptable. */
export function parsePeerStatus(bytes: Uint8Array): PeerStatus | RefusalReason {
  if (bytes.byteLength > MAX_PEER_STATUS_BYTES) return RefusalReason.OVERSIZED;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return RefusalReason.MALFORMED;
  }
  const r = PeerStatusSchema.safeParse(json);
  if (!r.success) return RefusalReason.INVALID_FIELD;
  for (const id of r.data.neighbours) {
    try {
      peerIdFromString(id);
    } catch {
      return RefusalReason.INVALID_FIELD;
    }
  }
  return r.data as PeerStatus;
}

/** Answer `ops.status` requests with what `self()` returns (neighbours capped at MAX_PEER_STATUS_NEIGHBOURS). */
export function servePeerStatus(mesh: Mesh, self: () => { round: number | null; phase: Phase }): void {
  mesh.handleRequest(PEER_STATUS_METHOD, () => {
    const s = self();
    const body: PeerStatus = { v: PEER_STATUS_VERSION, round: s.round, phase: s.phase, neighbours: mesh.connectedPeers().slice(0, MAX_PEER_STATUS_NEIGHBOURS) };
    return new TextEncoder().encode(JSON.stringify(body));
  });
}

/** A polled member: its status (null when it did not answer acceptably) and the RTT of a sync ping. */
export interface PolledPeer {
  status: PeerStatus | null;
  /** Round trip of a `ping` request over a fresh sync stream (ms); null when it failed. */
  rttMs: number | null;
  polledMs: number;
}

/** Ask one peer for its status and measure a ping round trip. Never throws. */
export async function pollPeer(mesh: Mesh, peer: string): Promise<PolledPeer> {
  let rttMs: number | null = null;
  try {
    const t0 = performance.now();
    await mesh.request(peer, 'ping', new Uint8Array(8), { timeoutMs: PEER_STATUS_TIMEOUT_MS, maxResponseBytes: 8 });
    rttMs = Math.round((performance.now() - t0) * 100) / 100;
  } catch {
    // unreachable peers show no RTT
  }
  let status: PeerStatus | null = null;
  try {
    const got = await mesh.request(peer, PEER_STATUS_METHOD, new Uint8Array(0), { timeoutMs: PEER_STATUS_TIMEOUT_MS, maxResponseBytes: MAX_PEER_STATUS_BYTES });
    const parsed = parsePeerStatus(got);
    if (typeof parsed === 'number') mesh.refuse(parsed, PEER_STATUS_METHOD, peer);
    else status = parsed;
  } catch {
    // an older node without ops.status, or a timeout: no status
  }
  return { status, rttMs, polledMs: Date.now() };
}
