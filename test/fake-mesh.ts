/**
 * An in-memory implementation of MeshPort (src/round/mesh-port.ts) for unit tests of the round protocols: N ports on
 * one FakeNetwork, no sockets. Publishing delivers to every other reachable subscriber (validator first, then the
 * handler), requests call the peer's handler directly, and signatures are real Ed25519 signatures of keys derived
 * from a seed, so PeerIds and leader orders are the same on every run. Partitions cut delivery and requests between
 * groups. A scripted Byzantine member can `inject` any payload under any author (what gossip relays when a member
 * forwards messages signed by other keys). Unlike the libp2p mesh there is no envelope roster check: every message
 * reaches the protocol's own validators, whose verdicts are recorded for assertions.
 */
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import { RefusalError, RefusalReason, type MessageHandler, type MessageMeta, type PublishResult, type RequestContext, type RequestHandler, type RequestOptions, type SubscribeOptions } from '../src/mesh/index.ts';
import type { MeshPort } from '../src/round/mesh-port.ts';

/** A deterministic Ed25519 identity from a small seed. */
export async function seededIdentity(seed: number): Promise<{ key: PrivateKey; id: string }> {
  const s = new Uint8Array(32);
  new DataView(s.buffer).setUint32(0, seed >>> 0, true);
  s[31] = 0x5e;
  const key = await generateKeyPairFromSeed('Ed25519', s);
  return { key, id: peerIdFromPrivateKey(key).toString() };
}

/** One validator verdict: undefined reason = accepted. */
export interface Verdict {
  topic: string;
  from: string;
  reason: RefusalReason | undefined;
}

interface Subscription {
  handler: MessageHandler;
  opts: SubscribeOptions;
}

export class FakeNetwork {
  readonly ports = new Map<string, FakePort>();
  private groups: string[][] | null = null;
  /** Deliveries in flight (awaited by `settle`). */
  private readonly inflight = new Set<Promise<void>>();

  /** Whether `a` and `b` can reach each other (always, unless a partition puts them in different groups). */
  reachable(a: string, b: string): boolean {
    if (a === b || this.groups === null) return true;
    return this.groups.some((g) => g.includes(a) && g.includes(b));
  }

  /** Cut the network into `groups` (PeerIds); peers in no group are isolated. */
  partition(groups: string[][]): void {
    this.groups = groups.map((g) => [...g]);
  }

  heal(): void {
    this.groups = null;
  }

  /** Live peers `id` sees (itself included), sorted: the view a partition leaves. */
  view(id: string): string[] {
    return [...this.ports.keys()].filter((p) => this.reachable(id, p)).sort();
  }

  /** Deliver `payload` on `topic`, authored by `from`, relayed by `via`, to every reachable subscriber but the author. */
  deliver(topic: string, payload: Uint8Array, from: string, via: string, to?: readonly string[]): number {
    let n = 0;
    for (const id of [...this.ports.keys()].sort()) {
      if (id === from || id === via || (to !== undefined && !to.includes(id)) || !this.reachable(via, id)) continue;
      if (this.ports.get(id)!.receive(topic, payload, from, via)) n++;
    }
    return n;
  }

  track(p: Promise<void>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  /** Wait until every delivery in flight has run its validator and handler. */
  async settle(): Promise<void> {
    while (this.inflight.size) await Promise.all([...this.inflight]);
  }
}

export class FakePort implements MeshPort {
  readonly federation: string;
  readonly selfId: string;
  readonly roster: readonly string[] | undefined;
  /** Every validator verdict on messages this port received. */
  readonly verdicts: Verdict[] = [];
  /**
   * Payloads above their topic's `streamCutoverBytes` that this port took (the libp2p mesh pulls each over the sync
   * stream), and those it declined unpulled (`wantPayload` false).
   */
  readonly pulled: { topic: string; from: string; payload: Uint8Array }[] = [];
  readonly declined: { topic: string; from: string }[] = [];
  /** Stream requests this port made, by method. */
  readonly requests = new Map<string, number>();
  private readonly key: PrivateKey;
  private readonly net: FakeNetwork;
  private readonly subs = new Map<string, Subscription>();
  private readonly handlers = new Map<string, RequestHandler>();
  private stopped = false;

  constructor(net: FakeNetwork, federation: string, identity: { key: PrivateKey; id: string }, roster: readonly string[] | undefined) {
    this.net = net;
    this.federation = federation;
    this.key = identity.key;
    this.selfId = identity.id;
    this.roster = roster ? [...roster].sort() : undefined;
    net.ports.set(this.selfId, this);
  }

  onRoster(peer: string): boolean {
    return this.roster === undefined || this.roster.includes(peer);
  }

  subscribe(name: string, handler: MessageHandler, opts: SubscribeOptions = {}): void {
    this.subs.set(name, { handler, opts });
  }

  unsubscribe(name: string): void {
    this.subs.delete(name);
  }

  async publish(name: string, payload: Uint8Array): Promise<PublishResult> {
    if (this.stopped) return { recipients: 0, viaStream: false };
    return { recipients: this.net.deliver(name, Uint8Array.from(payload), this.selfId, this.selfId), viaStream: false };
  }

  handleRequest(method: string, handler: RequestHandler): void {
    this.handlers.set(method, handler);
  }

  async request(peer: string, method: string, body: Uint8Array, _opts?: RequestOptions): Promise<Uint8Array> {
    this.requests.set(method, (this.requests.get(method) ?? 0) + 1);
    const target = this.net.ports.get(peer);
    if (!target || target.stopped || !this.net.reachable(this.selfId, peer)) throw new Error(`fake mesh: ${peer.slice(-6)} unreachable`);
    return target.serve(this.selfId, method, Uint8Array.from(body));
  }

  async signWithIdentity(data: Uint8Array): Promise<Uint8Array> {
    return this.key.sign(data);
  }

  /** Stop receiving and serving (a crashed or stopped node). */
  stop(): void {
    this.stopped = true;
  }

  /** Called by the network: run the validator, then the handler if accepted. False when not subscribed. */
  receive(topic: string, payload: Uint8Array, from: string, via: string): boolean {
    const sub = this.subs.get(topic);
    if (!sub || this.stopped) return false;
    const cutover = sub.opts.streamCutoverBytes;
    const meta: MessageMeta = { topic, from: peerIdFromString(from), via: peerIdFromString(via), timestampMs: Date.now(), viaStream: cutover !== undefined && payload.byteLength > cutover };
    if (meta.viaStream) {
      if (sub.opts.wantPayload?.(meta) === false) {
        this.declined.push({ topic, from });
        return false;
      }
      this.pulled.push({ topic, from, payload });
    }
    const run = async (): Promise<void> => {
      await Promise.resolve();
      const max = sub.opts.maxPayloadBytes;
      const reason = max !== undefined && payload.byteLength > max ? RefusalReason.OVERSIZED : await sub.opts.validator?.(payload, meta);
      this.verdicts.push({ topic, from, reason: reason ?? undefined });
      if (reason === undefined && this.subs.get(topic) === sub) await sub.handler(payload, meta);
    };
    this.net.track(run().catch(() => {}));
    return true;
  }

  /** Called by a requesting port: the roster check of the sync stream, then the handler. */
  async serve(from: string, method: string, body: Uint8Array): Promise<Uint8Array> {
    const h = this.handlers.get(method);
    if (!this.onRoster(from)) throw new RefusalError(RefusalReason.NOT_ALLOWED, 'requester not on the roster');
    if (!h) throw new RefusalError(RefusalReason.UNKNOWN_METHOD, `no handler for ${method}`);
    const ctx = { peer: peerIdFromString(from), method, connection: undefined, signal: new AbortController().signal } as unknown as RequestContext;
    return Uint8Array.from(await h(body, ctx));
  }
}

/** N ports on one network with the roster = their PeerIds (seeds `seed0 .. seed0+n-1`). */
export async function fakeMeshes(n: number, opts: { federation?: string; seed0?: number; roster?: boolean } = {}): Promise<{ net: FakeNetwork; ports: FakePort[]; ids: string[] }> {
  const ids = await Promise.all(Array.from({ length: n }, (_, i) => seededIdentity((opts.seed0 ?? 1) + i)));
  const roster = opts.roster === false ? undefined : ids.map((x) => x.id);
  const net = new FakeNetwork();
  const ports = ids.map((x) => new FakePort(net, opts.federation ?? 'fake', x, roster));
  return { net, ports, ids: ids.map((x) => x.id) };
}
