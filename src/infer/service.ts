/**
 * Collaborative prediction over the mesh (protocols/infer.md): a node serves `/fmfl/<federation>/infer/1.0.0`
 * with its anytime model, and asks k peers for class probabilities on an input with a deadline, combining the
 * valid answers that arrive in time (mean or confidence-weighted) and ignoring late, invalid or mismatched ones.
 */
import { peerIdFromString } from '@libp2p/peer-id';
import type { PeerId } from '@libp2p/interface';
import type { Mesh } from '../mesh/mesh.ts';
import type { RequestResponseProtocol } from '../mesh/request-response.ts';
import { RefusalError, RefusalReason } from '../mesh/errors.ts';
import { MNIST_INPUT, pixelsPerImage } from '../data/index.ts';
import { DEFAULT_BACKBONE } from '../model/backbone.ts';
import type { Logger } from '../util/log.ts';
import type { AnytimeModel, ExitLatency, PredictMode } from './anytime.ts';
import { argmax, combineProbs, isProbVector, type CombineRule } from './combine.ts';
import { InferError } from './errors.ts';
import { normalizeImages } from './input.ts';
import {
  DEFAULT_DEADLINE_MS,
  DEFAULT_MAX_CONCURRENT,
  DEFAULT_RATE_BURST,
  DEFAULT_RATE_PER_SEC,
  INFER_FEATURE,
  INFER_METHOD,
  INFER_PROTOCOL,
  INFER_SEMVER,
  INFER_VERSION,
  MAX_DEADLINE_MS,
  MAX_ID_CHARS,
  MAX_INFER_CLASSES,
  MAX_INFER_IMAGES,
  MAX_INFER_IMAGE_BYTES,
  MAX_INFER_MESSAGE_CHARS,
  MAX_INFER_REQUEST_BYTES,
  MAX_INFER_RESPONSE_BYTES,
  MAX_PEERS_K,
  MAX_RATE_BUCKETS,
  MIN_DEADLINE_MS,
  REQUEST_ID_RE,
  RESPONDER_BUDGET_SHARE,
} from './limits.ts';
import { InferRequest, InferResponse, InferStatus } from './pb/infer.ts';

export { InferStatus } from './pb/infer.ts';

/** A token bucket: `capacity` tokens, refilled at `ratePerSec`; `take()` spends one if available. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    readonly ratePerSec: number,
    readonly capacity: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(ratePerSec > 0) || !(capacity >= 1)) throw new RangeError('token bucket needs ratePerSec > 0 and capacity >= 1');
    this.tokens = capacity;
    this.last = now();
  }

  /** Spend one token; false when the bucket is empty. */
  take(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.capacity, this.tokens + ((t - this.last) / 1000) * this.ratePerSec);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** A request that passed validation. */
export interface ValidRequest {
  requestId: string;
  count: number;
  pixels: Uint8Array;
  deadlineMs: number;
  /** 1-based; 0 = deepest. */
  maxExit: number;
  backbone: string;
}

function refusal(status: InferStatus, requestId: string, message: string): Uint8Array {
  return InferResponse.encode({ version: INFER_VERSION, status, requestId: REQUEST_ID_RE.test(requestId) ? requestId : '', message: message.slice(0, MAX_INFER_MESSAGE_CHARS) });
}

/**
 * Decode and validate an InferRequest body. Returns the request, or the refusal status and message.
 * Never throws on hostile bytes.
 */
export function validateInferRequest(body: Uint8Array): { ok: true; req: ValidRequest } | { ok: false; status: InferStatus; message: string; requestId: string } {
  if (body.byteLength > MAX_INFER_REQUEST_BYTES) return { ok: false, status: InferStatus.OVERSIZED, message: `request exceeds ${MAX_INFER_REQUEST_BYTES} bytes`, requestId: '' };
  let r: InferRequest;
  try {
    r = InferRequest.decode(body);
  } catch {
    return { ok: false, status: InferStatus.MALFORMED, message: 'request does not decode as InferRequest', requestId: '' };
  }
  const id = r.requestId;
  const no = (status: InferStatus, message: string) => ({ ok: false as const, status, message, requestId: id });
  if (r.version !== INFER_VERSION) return no(InferStatus.UNSUPPORTED_VERSION, `version ${r.version} is not ${INFER_VERSION}`);
  if (!REQUEST_ID_RE.test(id)) return no(InferStatus.MALFORMED, 'request_id must be 1..64 chars of [A-Za-z0-9._-]');
  if (r.count < 1) return no(InferStatus.MALFORMED, 'count must be at least 1');
  if (r.count > MAX_INFER_IMAGES) return no(InferStatus.OVERSIZED, `count ${r.count} exceeds ${MAX_INFER_IMAGES} images`);
  if (r.pixels.byteLength === 0 || r.pixels.byteLength % r.count !== 0) return no(InferStatus.MALFORMED, `pixels must hold count equal-sized images, got ${r.pixels.byteLength} bytes for ${r.count}`);
  if (r.pixels.byteLength / r.count > MAX_INFER_IMAGE_BYTES) return no(InferStatus.OVERSIZED, `images over ${MAX_INFER_IMAGE_BYTES} bytes each`);
  if (r.deadlineMs < MIN_DEADLINE_MS || r.deadlineMs > MAX_DEADLINE_MS) return no(InferStatus.MALFORMED, `deadline_ms must be in ${MIN_DEADLINE_MS}..${MAX_DEADLINE_MS}`);
  if (r.maxExit > 64) return no(InferStatus.MALFORMED, 'max_exit out of range');
  if (r.backbone.length === 0 || r.backbone.length > 128) return no(InferStatus.MALFORMED, 'backbone must be 1..128 chars');
  return { ok: true, req: { requestId: id, count: r.count, pixels: r.pixels, deadlineMs: r.deadlineMs, maxExit: r.maxExit, backbone: r.backbone } };
}

/** A valid answer from a peer. */
export interface PeerAnswer {
  peer: string;
  /** [count][C] probabilities. */
  probs: Float64Array[];
  /** 1-based exit used. */
  exit: number;
  modelVersion: string;
  ms: number;
}

/** Why an answer was ignored. */
export type IgnoredReason =
  /** No answer before the deadline. */
  | 'timeout'
  /** The peer refused (status, or a stream-level refusal); `detail` names it. */
  | 'refused'
  /** The bytes do not decode, or fields are out of range (bad probabilities, wrong count). */
  | 'invalid'
  /** Another backbone, class count, request id, or model version than required. */
  | 'mismatch'
  /** The stream failed (peer unreachable, connection reset). */
  | 'unreachable';

/** Expectations an answer is checked against. */
export interface AnswerExpectation {
  requestId: string;
  count: number;
  classes: number;
  backbone: string;
  /** Deepest valid exit (1-based). */
  maxExit: number;
  /** Only accept this model version (default: any). */
  modelVersion?: string;
}

/** Decode and check an InferResponse body. Never throws on hostile bytes. */
export function validateInferResponse(body: Uint8Array, exp: AnswerExpectation): { ok: true; probs: Float64Array[]; exit: number; modelVersion: string } | { ok: false; reason: IgnoredReason; detail: string } {
  if (body.byteLength > MAX_INFER_RESPONSE_BYTES) return { ok: false, reason: 'invalid', detail: 'response too large' };
  let r: InferResponse;
  try {
    r = InferResponse.decode(body, { limits: { probs: MAX_INFER_IMAGES * MAX_INFER_CLASSES } as never });
  } catch {
    return { ok: false, reason: 'invalid', detail: 'response does not decode' };
  }
  if (r.version !== INFER_VERSION) return { ok: false, reason: 'invalid', detail: `response version ${r.version}` };
  if (typeof r.status !== 'string' || !(r.status in InferStatus)) return { ok: false, reason: 'invalid', detail: 'unknown status' };
  if (r.status !== InferStatus.OK) return { ok: false, reason: 'refused', detail: `${r.status}: ${r.message.slice(0, MAX_INFER_MESSAGE_CHARS)}` };
  if (r.requestId !== exp.requestId) return { ok: false, reason: 'mismatch', detail: 'request id does not match' };
  if (r.backbone !== exp.backbone) return { ok: false, reason: 'mismatch', detail: `backbone ${r.backbone.slice(0, 64)} is not ${exp.backbone}` };
  if (r.classes !== exp.classes) return { ok: false, reason: 'mismatch', detail: `${r.classes} classes, expected ${exp.classes}` };
  if (exp.modelVersion !== undefined && r.modelVersion !== exp.modelVersion) return { ok: false, reason: 'mismatch', detail: `model version ${r.modelVersion.slice(0, 64)} is not ${exp.modelVersion}` };
  if (r.modelVersion.length === 0 || r.modelVersion.length > MAX_ID_CHARS) return { ok: false, reason: 'invalid', detail: 'model version missing or too long' };
  if (!Number.isInteger(r.exit) || r.exit < 1 || r.exit > exp.maxExit) return { ok: false, reason: 'invalid', detail: `exit ${r.exit} out of range` };
  if (r.probs.length !== exp.count * exp.classes) return { ok: false, reason: 'invalid', detail: `${r.probs.length} probabilities, expected ${exp.count * exp.classes}` };
  const probs: Float64Array[] = [];
  for (let b = 0; b < exp.count; b++) {
    const p = Float64Array.from(r.probs.slice(b * exp.classes, (b + 1) * exp.classes));
    if (!isProbVector(p, exp.classes)) return { ok: false, reason: 'invalid', detail: `row ${b} is not a probability vector` };
    let s = 0;
    for (const v of p) s += v;
    for (let c = 0; c < p.length; c++) p[c] /= s;
    probs.push(p);
  }
  return { ok: true, probs, exit: r.exit, modelVersion: r.modelVersion };
}

/** Latency advertised in capability features: `infer-lat1:<ms>,<ms>,...` and `infer-lat64:...` (cumulative per exit). */
export function latencyFeatures(lat: ExitLatency): string[] {
  const f = (v: number[]): string => v.map((x) => (x < 10 ? x.toFixed(2) : x.toFixed(1))).join(',');
  return [`infer-lat1:${f(lat.batch1)}`.slice(0, 64), `infer-lat64:${f(lat.batch64)}`.slice(0, 64)];
}

/** Parse the latency features of a member's capabilities (null when absent or malformed). */
export function parseLatencyFeatures(features: readonly string[]): ExitLatency | null {
  const get = (p: string): number[] | null => {
    const f = features.find((x) => x.startsWith(p));
    if (!f) return null;
    const v = f.slice(p.length).split(',').map(Number);
    return v.length > 0 && v.length <= 64 && v.every((x) => Number.isFinite(x) && x >= 0) ? v : null;
  };
  const b1 = get('infer-lat1:');
  const b64 = get('infer-lat64:');
  return b1 && b64 ? { batch1: b1, batch64: b64 } : null;
}

/** Options of {@link InferService}. */
export interface InferServiceOptions {
  mesh: Mesh;
  /** The local model; without one the node only asks others (and answers UNAVAILABLE). */
  model?: AnytimeModel | null;
  /** Inbound predictions served at once (default DEFAULT_MAX_CONCURRENT). */
  maxConcurrent?: number;
  /** Per-peer token bucket (defaults DEFAULT_RATE_PER_SEC / DEFAULT_RATE_BURST). */
  ratePerSec?: number;
  rateBurst?: number;
  /** Mode of served predictions (default 'head'). */
  mode?: PredictMode;
  logger?: Logger;
  now?: () => number;
}

/** Options of a collaborative prediction. */
export interface CollaborateOptions {
  /** How many peers to ask (1..MAX_PEERS_K). */
  k: number;
  /** Deadline in ms for the whole exchange (default DEFAULT_DEADLINE_MS). */
  deadlineMs?: number;
  combine?: CombineRule;
  /** Also predict locally and include it in the combination (default: when a model is loaded). */
  includeLocal?: boolean;
  /** Ask these PeerIds (default: members advertising the `infer` feature, deepest exits first). */
  peers?: string[];
  /** Deepest exit asked of peers, 1-based (0 = their deepest). */
  maxExit?: number;
  /** Only accept answers with this model version. */
  modelVersion?: string;
  /** Local prediction options. */
  local?: { exit?: number | 'auto'; budgetMs?: number; mode?: PredictMode };
}

/** Result of a collaborative prediction. */
export interface CollaborativeResult {
  /** Combined probabilities per image. */
  probs: Float64Array[];
  labels: number[];
  answers: PeerAnswer[];
  ignored: { peer: string; reason: IgnoredReason; detail: string }[];
  local: { exit: number; probs: Float64Array[] } | null;
  combine: CombineRule;
}

let requestCounter = 0;

/**
 * Serves and requests collaborative predictions on a mesh. Construct it before or after the mesh starts (the
 * mesh registers the protocol either way), call `start()` to advertise, `stop()` before the mesh stops.
 */
export class InferService {
  readonly mesh: Mesh;
  model: AnytimeModel | null;
  private readonly protocol: RequestResponseProtocol;
  private readonly maxConcurrent: number;
  private readonly ratePerSec: number;
  private readonly rateBurst: number;
  private readonly buckets = new Map<string, TokenBucket>();
  private readonly mode: PredictMode;
  private readonly now: () => number;
  private readonly log: Logger | undefined;
  private active = 0;
  /** Counters of served requests by status. */
  readonly served = new Map<InferStatus, number>();

  constructor(o: InferServiceOptions) {
    this.mesh = o.mesh;
    this.model = o.model ?? null;
    this.maxConcurrent = o.maxConcurrent ?? DEFAULT_MAX_CONCURRENT;
    this.ratePerSec = o.ratePerSec ?? DEFAULT_RATE_PER_SEC;
    this.rateBurst = o.rateBurst ?? DEFAULT_RATE_BURST;
    if (!Number.isInteger(this.maxConcurrent) || this.maxConcurrent < 1) throw new InferError('BAD_OPTION', 'maxConcurrent must be a positive integer');
    this.mode = o.mode ?? 'head';
    this.now = o.now ?? (() => performance.now());
    this.log = o.logger;
    this.protocol = o.mesh.createProtocol(INFER_PROTOCOL, INFER_SEMVER, { maxRequestBytes: MAX_INFER_REQUEST_BYTES, timeoutMs: MAX_DEADLINE_MS + 1000 });
    this.protocol.handle(INFER_METHOD, (body, ctx) => this.handle(body, ctx.peer.toString()));
  }

  /**
   * Advertise capabilities. The protocol itself is registered by the mesh (at its start, or at once when it
   * already runs).
   */
  async start(): Promise<void> {
    this.advertise();
  }

  /** Unregister the protocol. */
  async stop(): Promise<void> {
    await this.protocol.stop();
  }

  /** Advertise `infer`, the exit depth and the calibrated latency in this node's capabilities. */
  advertise(): void {
    const m = this.model;
    const caps = this.mesh.membership.getCapabilities();
    const features = caps.features.filter((f) => f !== INFER_FEATURE && !f.startsWith('infer-lat'));
    if (m) {
      features.push(INFER_FEATURE);
      if (m.latency) features.push(...latencyFeatures(m.latency));
    }
    this.mesh.membership.setCapabilities({ features: features.slice(0, 16), maxExitDepth: m ? m.exits : 0 });
  }

  private count(s: InferStatus): void {
    this.served.set(s, (this.served.get(s) ?? 0) + 1);
  }

  private bucket(peer: string): TokenBucket {
    let b = this.buckets.get(peer);
    if (!b) {
      if (this.buckets.size >= MAX_RATE_BUCKETS) this.buckets.delete(this.buckets.keys().next().value!);
      b = new TokenBucket(this.ratePerSec, this.rateBurst, this.now);
      this.buckets.set(peer, b);
    }
    return b;
  }

  /**
   * Answer one InferRequest body from `peer` (the protocol handler; exposed for tests). Always returns an
   * InferResponse: OK with probabilities, or a refusal status with a reason.
   */
  async handle(body: Uint8Array, peer: string): Promise<Uint8Array> {
    if (!this.bucket(peer).take()) {
      this.count(InferStatus.RATE_LIMITED);
      return refusal(InferStatus.RATE_LIMITED, '', `more than ${this.ratePerSec} requests/s (burst ${this.rateBurst}); slow down`);
    }
    const v = validateInferRequest(body);
    if (!v.ok) {
      this.count(v.status);
      return refusal(v.status, v.requestId, v.message);
    }
    const req = v.req;
    const m = this.model;
    if (!m) {
      this.count(InferStatus.UNAVAILABLE);
      return refusal(InferStatus.UNAVAILABLE, req.requestId, 'no model loaded on this node');
    }
    if (req.backbone !== m.backboneName) {
      this.count(InferStatus.MODEL_MISMATCH);
      return refusal(InferStatus.MODEL_MISMATCH, req.requestId, `this node runs backbone ${m.backboneName}`);
    }
    if (req.pixels.byteLength !== req.count * pixelsPerImage(m.input)) {
      this.count(InferStatus.MODEL_MISMATCH);
      return refusal(InferStatus.MODEL_MISMATCH, req.requestId, `this node's model takes ${m.input.channels}x${m.input.size}x${m.input.size} images`);
    }
    const budget = req.deadlineMs * RESPONDER_BUDGET_SHARE;
    const lat = m.latency ? (req.count === 1 ? m.latency.batch1 : m.latency.batch64) : null;
    if (lat && lat[0] > budget) {
      this.count(InferStatus.DEADLINE_TOO_SHORT);
      return refusal(InferStatus.DEADLINE_TOO_SHORT, req.requestId, `exit 1 needs about ${lat[0].toFixed(2)} ms here`);
    }
    if (this.active >= this.maxConcurrent) {
      this.count(InferStatus.BUSY);
      return refusal(InferStatus.BUSY, req.requestId, `serving ${this.active} predictions already`);
    }
    this.active++;
    try {
      const exit = req.maxExit === 0 ? m.exits - 1 : Math.min(req.maxExit, m.exits) - 1;
      const P = pixelsPerImage(m.input);
      const imgs: Uint8Array[] = [];
      for (let b = 0; b < req.count; b++) imgs.push(req.pixels.subarray(b * P, (b + 1) * P));
      const { predictions, result } = await m.predict(normalizeImages(imgs, m.input), req.count, { exit, budgetMs: budget, mode: this.mode });
      const probs: number[] = [];
      for (const p of predictions) probs.push(...p.probs);
      this.count(InferStatus.OK);
      return InferResponse.encode({
        version: INFER_VERSION, status: InferStatus.OK, requestId: req.requestId, message: '', classes: m.cfg.classes, probs,
        exit: result.exit + 1, modelVersion: m.version.slice(0, MAX_ID_CHARS), backbone: m.backboneName,
      });
    } catch (err) {
      this.log?.warn({ err: String(err) }, 'inference failed');
      this.count(InferStatus.UNAVAILABLE);
      return refusal(InferStatus.UNAVAILABLE, req.requestId, 'inference failed');
    } finally {
      this.active--;
    }
  }

  /** Peers to ask: members advertising `infer`, deepest exit first, then by PeerId. */
  candidates(): string[] {
    return this.mesh.membership
      .members()
      .filter((m) => m.capabilities.features.includes(INFER_FEATURE))
      .sort((a, b) => b.capabilities.maxExitDepth - a.capabilities.maxExitDepth || (a.peerId < b.peerId ? -1 : 1))
      .map((m) => m.peerId);
  }

  /**
   * Ask k peers (and optionally the local model) for class probabilities of `images` (28x28 greyscale bytes),
   * waiting at most `deadlineMs`; combine the valid answers. Late, refused, invalid or mismatched answers are
   * listed in `ignored` and never block or corrupt the result.
   * @throws InferError('NO_ANSWER') when no valid answer arrived and there is no local model.
   */
  async collaborate(images: Uint8Array[], o: CollaborateOptions): Promise<CollaborativeResult> {
    const count = images.length;
    if (count < 1 || count > MAX_INFER_IMAGES) throw new InferError('BAD_INPUT', `collaborative prediction takes 1..${MAX_INFER_IMAGES} images`);
    const P = pixelsPerImage(this.model?.input ?? MNIST_INPUT);
    if (images.some((i) => i.length !== P)) throw new InferError('BAD_INPUT', `every image must have ${P} values (the model's channels x size x size)`);
    if (!Number.isInteger(o.k) || o.k < 0 || o.k > MAX_PEERS_K) throw new InferError('BAD_OPTION', `k must be in 0..${MAX_PEERS_K}`);
    const deadline = o.deadlineMs ?? DEFAULT_DEADLINE_MS;
    if (!(deadline >= MIN_DEADLINE_MS && deadline <= MAX_DEADLINE_MS)) throw new InferError('BAD_OPTION', `deadline must be in ${MIN_DEADLINE_MS}..${MAX_DEADLINE_MS} ms`);
    const combine = o.combine ?? 'mean';
    const m = this.model;
    const backbone = m?.backboneName ?? DEFAULT_BACKBONE;
    const classes = m?.cfg.classes ?? 10;
    /** A peer's answer may not claim an exit deeper than it advertises (64 when it advertises none). */
    const depthOf = (peer: string): number => this.mesh.membership.get(peer)?.capabilities.maxExitDepth || 64;
    const self = this.mesh.peerId.toString();
    const peers = (o.peers ?? this.candidates()).filter((p) => p !== self).slice(0, o.k);
    const requestId = `r${Date.now().toString(36)}-${(requestCounter++).toString(36)}`;
    const pixels = new Uint8Array(count * P);
    images.forEach((img, i) => pixels.set(img, i * P));
    const body = InferRequest.encode({ version: INFER_VERSION, requestId, count, pixels, deadlineMs: Math.round(deadline), maxExit: o.maxExit ?? 0, backbone });
    const t0 = performance.now();
    const asked = peers.map(async (peer): Promise<PeerAnswer | { peer: string; reason: IgnoredReason; detail: string }> => {
      let pid: PeerId;
      try {
        pid = peerIdFromString(peer);
      } catch {
        return { peer, reason: 'unreachable', detail: 'not a PeerId' };
      }
      try {
        const res = await this.protocol.request(pid, INFER_METHOD, body, { timeoutMs: deadline, maxResponseBytes: MAX_INFER_RESPONSE_BYTES });
        const v = validateInferResponse(res, { requestId, count, classes, backbone, maxExit: depthOf(peer), modelVersion: o.modelVersion });
        if (!v.ok) return { peer, reason: v.reason, detail: v.detail };
        return { peer, probs: v.probs, exit: v.exit, modelVersion: v.modelVersion, ms: performance.now() - t0 };
      } catch (err) {
        if (err instanceof RefusalError) {
          if (err.reason === RefusalReason.TIMEOUT) return { peer, reason: 'timeout', detail: 'no answer before the deadline' };
          if (err.reason === RefusalReason.MALFORMED || err.reason === RefusalReason.OVERSIZED) return { peer, reason: 'invalid', detail: err.message.slice(0, 200) };
          return { peer, reason: err.message.startsWith('peer refused') ? 'refused' : 'unreachable', detail: err.message.slice(0, 200) };
        }
        return { peer, reason: 'unreachable', detail: String(err).slice(0, 200) };
      }
    });
    const includeLocal = o.includeLocal ?? m !== null;
    let local: CollaborativeResult['local'] = null;
    if (includeLocal) {
      if (!m) throw new InferError('BAD_OPTION', 'includeLocal needs a local model');
      const { predictions, result } = await m.predict(normalizeImages(images, m.input), count, { exit: o.local?.exit, budgetMs: o.local?.budgetMs, mode: o.local?.mode ?? this.mode });
      local = { exit: result.exit + 1, probs: predictions.map((p) => p.probs) };
    }
    const settled = await Promise.all(asked);
    const answers = settled.filter((a): a is PeerAnswer => 'probs' in a);
    const ignored = settled.filter((a): a is { peer: string; reason: IgnoredReason; detail: string } => !('probs' in a));
    if (answers.length === 0 && !local) throw new InferError('NO_ANSWER', `none of ${peers.length} peers answered validly within ${deadline} ms and there is no local model`);
    const probs: Float64Array[] = [];
    for (let b = 0; b < count; b++) {
      const rows = answers.map((a) => a.probs[b]);
      if (local) rows.push(local.probs[b]);
      probs.push(combineProbs(rows, combine));
    }
    return { probs, labels: probs.map(argmax), answers, ignored, local, combine };
  }
}
