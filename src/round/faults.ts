/**
 * Fault injection as a decorator of a node's MeshPort, not code inside a protocol: the protocol runs unchanged and
 * honestly, while what it publishes, serves and receives is rewritten the way a Byzantine member (or a lossy
 * network) would. Used by the simulator (FederationConfig `attack` / `dropRate`) and by tests to check that honest
 * members contain each attack (protocols/round.md, "Threat model").
 *
 * Attacks (by a member signing with its own, roster-listed key):
 * - `scale-update` / `nan-update`: its update is re-encoded dense with every value scaled by `factor` (and, for
 *   `nan-update`, one value overwritten with NaN), re-signed; its own aggregates are not published (it never leads).
 * - `scale-global`: every aggregate it publishes is replaced by a self-consistent commitment to a scaled step, and
 *   `round.step` serves that scaled step.
 * - `early-global`: right after its update, when it is among the round's first MAX_LEADER_RANKS, it publishes a
 *   self-made aggregate (its own update, scaled) at once, before its slot.
 * - `forge-state`: it answers `round.state` with self-consistent garbage states ahead of the requester, alternately
 *   past the last round and with a certificate of attestations by made-up keys plus its own.
 * - `withhold`: it never publishes its update and refuses `round.update` / `round.input`.
 */
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { RefusalError, RefusalReason, type PublishResult, type RequestHandler } from '../mesh/index.ts';
import { decodeUpdate, encodeUpdate, type TensorMap, type UpdateManifest } from '../update/index.ts';
import { makeAttestation } from './certificate.ts';
import { Rng } from '../util/rng.ts';
import { GLOBAL_TOPIC, INPUT_METHOD, leaderOrder, MAX_LEADER_RANKS, ROUND_WIRE_VERSION, sha256, STATE_METHOD, STEP_METHOD, UPDATE_METHOD, UPDATE_TOPIC, updateSigningBytes } from './leader-wire.ts';
import type { MeshPort } from './mesh-port.ts';
import { GlobalUpdate, SignedUpdate, StateResponse, StepRequest } from './pb/round.ts';
import { applyDelta, deltaOf, encodeState, makeState, type GlobalState } from './state.ts';

export type FaultKind = 'scale-update' | 'nan-update' | 'scale-global' | 'early-global' | 'forge-state' | 'withhold' | 'none';

export interface FaultOptions {
  kind: FaultKind;
  /** Scale of forged deltas (default 20). */
  factor?: number;
  /** Drop this fraction of inbound messages on round topics, as if lost (seeded by `seed`). */
  dropRate?: number;
  seed?: number;
  manifest: UpdateManifest;
  /** The node's current global state (its protocol's); needed by the global and state forgeries. */
  state?: () => GlobalState;
  /** Live members including self (for the leader order of `early-global`). */
  members?: () => string[];
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

/** Re-encode a signed update dense with its values scaled (and one NaN), re-signed by the same node. */
async function corruptUpdate(inner: MeshPort, signed: Uint8Array, opts: FaultOptions, factor: number): Promise<Uint8Array> {
  const s = SignedUpdate.decode(signed);
  const u = decodeUpdate(s.update, opts.manifest);
  const deltas = scaled(u.deltas, factor);
  let bytes = encodeUpdate({ ...u, deltas }, opts.manifest, { bits: 32, prototypeBits: 32 }).bytes;
  if (opts.kind === 'nan-update') {
    // Overwrite the first float32 of the dense payload that equals a scaled value with NaN.
    const first = [...deltas.values()].find((t) => t.some((x) => x !== 0));
    if (first) {
      const pat = new Uint8Array(first.buffer, first.byteOffset, 4);
      bytes = Uint8Array.from(bytes);
      for (let i = 0; i + 4 <= bytes.length; i++) {
        if (bytes[i] === pat[0] && bytes[i + 1] === pat[1] && bytes[i + 2] === pat[2] && bytes[i + 3] === pat[3]) {
          new DataView(bytes.buffer).setFloat32(i, Number.NaN, true);
          break;
        }
      }
    }
  }
  const signature = await inner.signWithIdentity(updateSigningBytes(inner.federation, sha256(bytes)));
  return SignedUpdate.encode({ version: ROUND_WIRE_VERSION, update: bytes, signature });
}

/**
 * A MeshPort that behaves as `opts.kind` over `inner` (and drops `opts.dropRate` of inbound round messages).
 * Returns the decorated port and a log of what was forged.
 */
export function withFaults(inner: MeshPort, opts: FaultOptions): { port: MeshPort; log: FaultLog } {
  const log: FaultLog = { forgedGlobals: 0, forgedStates: 0, withheld: 0 };
  const factor = opts.factor ?? 20;
  const fed = inner.federation;
  const self = inner.selfId;
  const publish = (name: string, payload: Uint8Array): Promise<PublishResult> => inner.publish(name, payload);
  const handle = (method: string, h: RequestHandler): void => inner.handleRequest(method, h);
  const dropRng = new Rng((opts.seed ?? 0) ^ 0xd40b);
  let base: GlobalState | null = null;
  /** The forged steps by round, served over `round.step` in place of the honest ones. */
  const forgedSteps = new Map<number, Uint8Array>();

  const forgeGlobal = (round: number, rank: number, contributors: string[], digests: Uint8Array[], delta: TensorMap, protos: GlobalState['prototypes']): Uint8Array => {
    const b = base!;
    const u = encodeUpdate({ federation: fed, round, baseVersion: round - 1, sender: self, sampleCount: 1, loraRank: opts.loraRank, deltas: delta, prototypes: protos }, opts.manifest, { bits: 32, prototypeBits: 32 });
    const d = decodeUpdate(u.bytes, opts.manifest);
    const next = applyDelta(b, d.deltas, d.prototypes, opts.manifest);
    log.forgedGlobals++;
    forgedSteps.set(round, u.bytes);
    return GlobalUpdate.encode({ version: ROUND_WIRE_VERSION, round: BigInt(round), baseHash: b.hash, newHash: next.hash, contributors, contributorDigests: digests, leaderRank: rank });
  };

  const port: MeshPort = {
    federation: inner.federation,
    selfId: inner.selfId,
    get roster() {
      return inner.roster;
    },
    onRoster: (p) => inner.onRoster(p),
    unsubscribe: (name) => inner.unsubscribe(name),
    request: (peer, method, body, o) => inner.request(peer, method, body, o),
    signWithIdentity: (d) => inner.signWithIdentity(d),
    subscribe: (name, handler, o) => {
      const rate = opts.dropRate ?? 0;
      inner.subscribe(name, rate > 0 ? (p, m) => (dropRng.next() < rate ? undefined : handler(p, m)) : handler, o);
    },
    publish: (name, payload) => forgePublish(name, payload),
    handleRequest: (method, handler) => forgeHandle(method, handler),
  };

  const forgePublish = async (name: string, payload: Uint8Array): Promise<PublishResult> => {
    if (name === UPDATE_TOPIC && (opts.kind === 'scale-update' || opts.kind === 'nan-update')) {
      return publish(name, await corruptUpdate(inner, payload, opts, factor));
    }
    if (name === GLOBAL_TOPIC && (opts.kind === 'scale-update' || opts.kind === 'nan-update')) return { recipients: 0, viaStream: false };
    if (name === UPDATE_TOPIC) {
      base = opts.state?.() ?? null;
      if (opts.kind === 'withhold') {
        log.withheld++;
        return { recipients: 0, viaStream: false };
      }
      const res = await publish(name, payload);
      if (opts.kind === 'early-global') {
        const s = SignedUpdate.decode(payload);
        const own = decodeUpdate(s.update, opts.manifest);
        const rank = leaderOrder(fed, own.round, opts.members?.() ?? [self]).indexOf(self);
        if (base && rank >= 0 && rank < MAX_LEADER_RANKS) {
          await publish(GLOBAL_TOPIC, forgeGlobal(own.round, rank, [self], [sha256(s.update)], scaled(own.deltas, factor), own.prototypes)).catch(() => {});
        }
      }
      return res;
    }
    if (name === GLOBAL_TOPIC && opts.kind === 'scale-global' && base) {
      // The commitment carries no step: the honest step is what the liar's protocol just applied to `base`.
      const g = GlobalUpdate.decode(payload);
      const now = opts.state!();
      return publish(name, forgeGlobal(Number(g.round), g.leaderRank, g.contributors, g.contributorDigests, scaled(deltaOf(now.tensors, base.tensors), factor), now.prototypes));
    }
    return publish(name, payload);
  };

  let stateRequests = 0;
  const forgeHandle = (method: string, handler: RequestHandler): void => {
    if ((opts.kind === 'scale-update' || opts.kind === 'nan-update') && (method === UPDATE_METHOD || method === INPUT_METHOD)) {
      // Pulled copies of its own update are the corrupted ones too.
      return handle(method, async (body, rc) => {
        const out = await handler(body, rc);
        try {
          if (decodeUpdate(SignedUpdate.decode(out).update, opts.manifest).sender === self) return await corruptUpdate(inner, out, opts, factor);
        } catch {
          // not its own update: served as is
        }
        return out;
      });
    }
    if (opts.kind === 'withhold' && (method === UPDATE_METHOD || method === INPUT_METHOD)) {
      return handle(method, () => {
        log.withheld++;
        throw new RefusalError(RefusalReason.UNAVAILABLE, 'withheld');
      });
    }
    if (method === STEP_METHOD && (opts.kind === 'scale-global' || opts.kind === 'early-global')) {
      return handle(method, async (body, rc) => {
        const forged = forgedSteps.get(Number(StepRequest.decode(body).round));
        return forged ?? handler(body, rc);
      });
    }
    if (opts.kind === 'forge-state' && method === STATE_METHOD) {
      return handle(method, async () => {
        const st = opts.state!();
        const farAhead = stateRequests++ % 2 === 0;
        const tensors: TensorMap = new Map([...st.tensors].map(([k, v]) => [k, new Float32Array(v.length).fill(7)]));
        const forged = makeState(st.version + (farAhead ? 100 : 2), tensors, [], opts.manifest);
        // A "certificate": its own attestation plus those of made-up keys that are no members.
        const cert = [];
        for (let i = 0; i < (farAhead ? 0 : 8); i++) {
          const k = await generateKeyPair('Ed25519');
          cert.push(await makeAttestation(async (d) => k.sign(d), fed, peerIdFromPrivateKey(k).toString(), forged.version, st.hash, forged.hash));
        }
        cert.push(await makeAttestation((d) => inner.signWithIdentity(d), fed, self, forged.version, st.hash, forged.hash));
        log.forgedStates++;
        return StateResponse.encode({
          version: ROUND_WIRE_VERSION, globalVersion: BigInt(forged.version), hash: forged.hash,
          state: encodeState(forged, opts.manifest, fed, self, opts.loraRank), certificate: cert,
        });
      });
    }
    return handle(method, handler);
  };
  return { port, log };
}
