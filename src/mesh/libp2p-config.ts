/**
 * The libp2p node of a mesh: transports (TCP, memory), Noise, Yamux, optional pnet behind the wire counter, the
 * connection gater, discovery, identify and gossipsub (StrictSign, no PX, fast dedup by author and seqno, RPC limits).
 */
import { createLibp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { memory } from '@libp2p/memory';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import { gossipsub } from '@chainsafe/libp2p-gossipsub';
import { preSharedKey } from '@libp2p/pnet';
import { prometheusMetrics } from '@libp2p/prometheus-metrics';
import type { Libp2p, PrivateKey, PubSub, ConnectionGater } from '@libp2p/interface';
import type { Identify } from '@libp2p/identify';
import type { GossipsubEvents } from '@chainsafe/libp2p-gossipsub';
import { createTopicScoreParams } from '@chainsafe/libp2p-gossipsub/score';
import type { TopicScoreParams } from '@chainsafe/libp2p-gossipsub/score';
import { discoveryServices } from './discovery.ts';
import { CountingProtector, type WireCounters } from './wire-counter.ts';
import type { MeshOptions } from './mesh-types.ts';
import {
  DEFAULT_DIAL_TIMEOUT_MS,
  MAX_INCOMING_PENDING_CONNECTIONS,
  DEFAULT_STREAM_NEGOTIATION_TIMEOUT_MS,
  DEFAULT_LISTEN,
  GOSSIP_RPC_LIMITS,
  TOPIC_INVALID_MESSAGE_DECAY,
  MAX_GOSSIP_RPC_BYTES,
  GOSSIP_MESH,
} from './constants.ts';

export type MeshLibp2p = Libp2p<{ identify: Identify; pubsub: PubSub<GossipsubEvents> }>;

/** Score parameters of every fmfl topic: only invalid deliveries (P4) count, so rejected messages cost their sender and nothing else does. */
export function topicScoreParams(invalidMessageWeight: number): TopicScoreParams {
  return createTopicScoreParams({
    topicWeight: 1,
    timeInMeshWeight: 0,
    firstMessageDeliveriesWeight: 0,
    meshMessageDeliveriesWeight: 0,
    meshFailurePenaltyWeight: 0,
    invalidMessageDeliveriesWeight: invalidMessageWeight,
    invalidMessageDeliveriesDecay: TOPIC_INVALID_MESSAGE_DECAY,
  });
}

let unkeyed = 0;
/** Gossipsub fast message id: author and sequence number (unique per message; messages lacking them never match). */
function fastMsgId(m: { from?: Uint8Array; seqno?: Uint8Array }): string {
  if (m.from === undefined || m.seqno === undefined) return `unkeyed:${unkeyed++}`;
  return `${Buffer.from(m.from.buffer, m.from.byteOffset, m.from.byteLength).toString('base64')}:${Buffer.from(m.seqno.buffer, m.seqno.byteOffset, m.seqno.byteLength).toString('base64')}`;
}

/** Build (not start) the libp2p node of a mesh. */
export async function buildLibp2p(opts: MeshOptions, privateKey: PrivateKey, wire: WireCounters, gater: ConnectionGater): Promise<MeshLibp2p> {
  const swarmKey = opts.swarmKey;
  return (await createLibp2p({
    privateKey,
    start: false,
    addresses: { listen: opts.listen ?? [DEFAULT_LISTEN] },
    // The memory transport's latency is applied by the protector, pipelined (its own delays chunks one after another).
    transports: [tcp(), memory({ latency: 0 })],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: (components) =>
      new CountingProtector(wire, swarmKey !== undefined ? preSharedKey({ psk: swarmKey })(components) : undefined, opts.loopYieldMs ?? 0, opts.memoryLatencyMs ?? 0),
    connectionGater: gater,
    peerDiscovery: discoveryServices(opts),
    ...(opts.metricsRegistry !== undefined ? { metrics: prometheusMetrics({ registry: opts.metricsRegistry }) } : {}),
    connectionMonitor: opts.connectionPingMs === 0 ? { enabled: false } : { pingInterval: opts.connectionPingMs ?? 10_000 },
    connectionManager: {
      dialTimeout: opts.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS,
      inboundUpgradeTimeout: opts.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS,
      maxIncomingPendingConnections: MAX_INCOMING_PENDING_CONNECTIONS,
      protocolNegotiationTimeout: opts.streamNegotiationTimeoutMs ?? DEFAULT_STREAM_NEGOTIATION_TIMEOUT_MS,
    },
    services: {
      identify: identify(),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictSign',
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        floodPublish: true,
        doPX: false,
        ...GOSSIP_MESH,
        heartbeatInterval: opts.gossipHeartbeatMs ?? 1000,
        // Nodes of one federation often share an IP (a host, a NAT, a simulation): no IP-colocation penalty.
        scoreParams: { IPColocationFactorWeight: 0 },
        // Deduplicate by (author, seqno) before the signature check: gossipsub otherwise verifies every copy a node
        // receives (one per forwarding neighbour) before finding it in the seen cache. The key is what StrictSign's
        // message id hashes, and it is cached only once a copy passed validation, so a forged copy of an unseen message
        // is still checked and rejected; later copies of an accepted message are dropped as duplicates, as before.
        fastMsgIdFn: fastMsgId,
        maxInboundDataLength: MAX_GOSSIP_RPC_BYTES,
        decodeRpcLimits: { ...GOSSIP_RPC_LIMITS },
      }),
    },
  })) as unknown as MeshLibp2p;
}
