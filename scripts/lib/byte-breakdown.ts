/**
 * Where a mesh's bytes go, for bench-bytes: counts what each mesh SENDS, by kind, at the application framing level
 * (so the sum over all meshes is what crossed the wire once; sent + received per node is twice that over N).
 * - `gossip:<topic>`: gossipsub RPC bytes of published/forwarded messages on that topic (duplicates included);
 * - `gossip:control`: the rest of every gossipsub RPC (IHAVE, IWANT, GRAFT, PRUNE, IDONTWANT, subscriptions);
 * - `stream:<method>`: sync-stream request bodies sent and response bodies received by the requester, by method
 *   (`blob` is the stream cutover's pull of large gossip payloads).
 * What the raw wire counter shows beyond these is transport framing: Noise, Yamux, length prefixes, identify, ping.
 * A bench instrument only: it wraps methods of one gossipsub instance and one request/response protocol.
 */
import { RPC } from '@chainsafe/libp2p-gossipsub/message';
import type { Mesh } from '../../src/mesh/index.ts';

export type ByteCounts = Record<string, number>;

/** Short topic name of `/fmfl/<federation>/<name>/1`. */
function shortTopic(id: string): string {
  const parts = id.split('/');
  return parts.length >= 2 ? parts[parts.length - 2] : id;
}

/** Start counting `mesh`'s sent bytes by kind; returns the live counters. */
export function instrumentMesh(mesh: Mesh): ByteCounts {
  const counts: ByteCounts = {};
  const add = (k: string, n: number): void => void (counts[k] = (counts[k] ?? 0) + n);
  const gs = mesh.libp2p.services.pubsub as unknown as { sendRpc: (id: string, rpc: RPC) => boolean; encodeRpcHook?: unknown };
  const sendRpc = gs.sendRpc.bind(gs);
  // sendRpc piggybacks pending control and gossip onto `rpc` before encoding: measure after, by wrapping RPC.encode
  // for the duration of the call.
  gs.sendRpc = (id: string, rpc: RPC): boolean => {
    const encode = RPC.encode;
    let total = 0;
    (RPC as { encode: typeof RPC.encode }).encode = (r: Partial<RPC>) => {
      const out = encode(r);
      total = out.byteLength;
      return out;
    };
    let ok: boolean;
    try {
      ok = sendRpc(id, rpc);
    } finally {
      (RPC as { encode: typeof RPC.encode }).encode = encode;
    }
    if (!ok) return ok;
    let msgs = 0;
    for (const m of rpc.messages ?? []) {
      const n = encode({ subscriptions: [], messages: [m] }).byteLength;
      msgs += n;
      add(`gossip:${shortTopic(m.topic)}`, n);
    }
    add('gossip:control', Math.max(0, total - msgs));
    return ok;
  };
  const request = mesh.sync.request.bind(mesh.sync);
  mesh.sync.request = async (peer, method, body, opts) => {
    add(`stream:${method}`, body.byteLength);
    const res = await request(peer, method, body, opts);
    add(`stream:${method}`, res.byteLength);
    return res;
  };
  return counts;
}

/** Per node per round, sent + received: 2 × (sum over meshes of `after − before`) / N / rounds, by kind. */
export function breakdownPerNodePerRound(before: ByteCounts[], after: ByteCounts[], rounds: number): ByteCounts {
  const sum: ByteCounts = {};
  after.forEach((a, i) => {
    for (const [k, v] of Object.entries(a)) sum[k] = (sum[k] ?? 0) + v - (before[i]?.[k] ?? 0);
  });
  const n = after.length;
  const out: ByteCounts = {};
  for (const k of Object.keys(sum).sort()) out[k] = Math.round((2 * sum[k]) / n / Math.max(1, rounds));
  return out;
}
