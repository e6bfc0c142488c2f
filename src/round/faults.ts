/**
 * Fault injection as a decorator of a node's mesh, not code inside a protocol: the protocol runs unchanged and
 * honestly, while what it publishes and serves is rewritten the way a Byzantine member would. Used by tests and
 * simulations to check that honest members contain each attack (protocols/round.md, "Threat model").
 *
 * Attacks (by a member signing with its own, roster-listed key):
 * - `scale-global`: every aggregate it publishes is replaced by a self-consistent copy whose delta is scaled.
 * - `early-global`: right after its update, when it is among the round's first MAX_LEADER_RANKS, it publishes a
 *   self-made aggregate (its own update, scaled) at once, before its slot.
 * - `forge-state`: it answers `round.state` with self-consistent garbage states ahead of the requester, alternately
 *   past the last round and with a certificate of attestations by made-up keys plus its own.
 * - `withhold`: it never publishes its update and refuses `round.update` / `round.input`.
 */
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { RefusalError, RefusalReason, type Mesh } from '../mesh/index.ts';
import { decodeUpdate, encodeUpdate, type TensorMap, type UpdateManifest } from '../update/index.ts';
import { makeAttestation } from './certificate.ts';
import { GLOBAL_TOPIC, INPUT_METHOD, leaderOrder, MAX_LEADER_RANKS, ROUND_WIRE_VERSION, sha256, STATE_METHOD, UPDATE_METHOD, UPDATE_TOPIC } from './leader-wire.ts';
import { GlobalUpdate, SignedUpdate, StateResponse } from './pb/round.ts';
import { applyDelta, encodeState, makeState, type GlobalState } from './state.ts';

export type FaultKind = 'scale-global' | 'early-global' | 'forge-state' | 'withhold';

export interface FaultOptions {
  kind: FaultKind;
  /** Scale of forged deltas (default 20). */
  factor?: number;
  manifest: UpdateManifest;
  /** The node's current global state (its protocol's). */
  state: () => GlobalState;
  /** Live members including self (for the leader order). */
  members: () => string[];
  loraRank: number;
}

/** What the decorator did, for assertions. */
export interface FaultLog {
  forgedGlobals: number;
  forgedStates: number;
  withheld: number;
}

function scaled(t: TensorMap, f: number): TensorMap {
  return new Map([...t].map(([k, v]) => [k, Float32Array.from(v, (x) => x * f)]));
}

/**
 * Decorate `mesh` in place (its publish and request handlers) so the node behaves as `opts.kind`. Call before the
 * round protocol starts. Returns a log of what was forged.
 */
export function injectFaults(mesh: Mesh, opts: FaultOptions): FaultLog {
  const log: FaultLog = { forgedGlobals: 0, forgedStates: 0, withheld: 0 };
  const factor = opts.factor ?? 20;
  const fed = mesh.federation;
  const self = mesh.peerId.toString();
  const publish = mesh.publish.bind(mesh);
  const handle = mesh.handleRequest.bind(mesh);
  let base: GlobalState | null = null;

  const forgeGlobal = (round: number, rank: number, contributors: string[], digests: Uint8Array[], delta: TensorMap, protos: GlobalState['prototypes']): Uint8Array => {
    const b = base!;
    const u = encodeUpdate({ federation: fed, round, baseVersion: round - 1, sender: self, sampleCount: 1, loraRank: opts.loraRank, deltas: delta, prototypes: protos }, opts.manifest, { bits: 32, prototypeBits: 32 });
    const d = decodeUpdate(u.bytes, opts.manifest);
    const next = applyDelta(b, d.deltas, d.prototypes, opts.manifest);
    log.forgedGlobals++;
    return GlobalUpdate.encode({ version: ROUND_WIRE_VERSION, round: BigInt(round), baseHash: b.hash, newHash: next.hash, contributors, contributorDigests: digests, leaderRank: rank, update: u.bytes });
  };

  mesh.publish = async (name: string, payload: Uint8Array) => {
    if (name === UPDATE_TOPIC) {
      base = opts.state();
      if (opts.kind === 'withhold') {
        log.withheld++;
        return { recipients: 0, viaStream: false };
      }
      const res = await publish(name, payload);
      if (opts.kind === 'early-global') {
        const s = SignedUpdate.decode(payload);
        const own = decodeUpdate(s.update, opts.manifest);
        const rank = leaderOrder(fed, own.round, opts.members()).indexOf(self);
        if (rank >= 0 && rank < MAX_LEADER_RANKS) {
          await publish(GLOBAL_TOPIC, forgeGlobal(own.round, rank, [self], [sha256(s.update)], scaled(own.deltas, factor), own.prototypes)).catch(() => {});
        }
      }
      return res;
    }
    if (name === GLOBAL_TOPIC && opts.kind === 'scale-global' && base) {
      const g = GlobalUpdate.decode(payload);
      const u = decodeUpdate(g.update, opts.manifest);
      return publish(name, forgeGlobal(Number(g.round), g.leaderRank, g.contributors, g.contributorDigests, scaled(u.deltas, factor), u.prototypes));
    }
    return publish(name, payload);
  };

  let stateRequests = 0;
  mesh.handleRequest = (method, handler) => {
    if (opts.kind === 'withhold' && (method === UPDATE_METHOD || method === INPUT_METHOD)) {
      return handle(method, () => {
        log.withheld++;
        throw new RefusalError(RefusalReason.UNAVAILABLE, 'withheld');
      });
    }
    if (opts.kind === 'forge-state' && method === STATE_METHOD) {
      return handle(method, async () => {
        const st = opts.state();
        const farAhead = stateRequests++ % 2 === 0;
        const tensors: TensorMap = new Map([...st.tensors].map(([k, v]) => [k, new Float32Array(v.length).fill(7)]));
        const forged = makeState(st.version + (farAhead ? 100 : 2), tensors, [], opts.manifest);
        // A "certificate": its own attestation plus those of made-up keys that are no members.
        const cert = [];
        for (let i = 0; i < (farAhead ? 0 : 8); i++) {
          const k = await generateKeyPair('Ed25519');
          cert.push(await makeAttestation(async (d) => k.sign(d), fed, peerIdFromPrivateKey(k).toString(), forged.version, st.hash, forged.hash));
        }
        cert.push(await makeAttestation((d) => mesh.signWithIdentity(d), fed, self, forged.version, st.hash, forged.hash));
        log.forgedStates++;
        return StateResponse.encode({
          version: ROUND_WIRE_VERSION, globalVersion: BigInt(forged.version), hash: forged.hash,
          state: encodeState(forged, opts.manifest, fed, self, opts.loraRank), certificate: cert,
        });
      });
    }
    return handle(method, handler);
  };
  return log;
}
