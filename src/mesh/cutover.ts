/**
 * Large-payload stream cutover of gossip topics: payloads above a topic's cutover are cached here and announced by
 * SHA-256 in the gossip envelope; each hop pulls the payload once from its forwarder (or the author) over the sync
 * stream's `blob` method and checks it against the announcement before forwarding.
 */
import type { Message, PeerId } from '@libp2p/interface';
import { Envelope } from './pb/envelope.ts';
import { RefusalError, RefusalReason } from './errors.ts';
import { BlobStore, sha256 } from './blob-store.ts';
import type { RequestResponseProtocol } from './request-response.ts';
import type { Logger } from '../util/log.ts';
import type { MessageMeta, SubscribeOptions } from './mesh-types.ts';
import {
  MAX_BLOB_BYTES,
  MAX_CLOCK_SKEW_MS,
  MAX_CONCURRENT_BLOB_FETCHES,
  MAX_ENVELOPE_BYTES,
  MAX_QUEUED_BLOB_FETCHES,
  MIN_STREAM_CUTOVER_BYTES,
  STREAM_CUTOVER_BYTES,
  WIRE_VERSION,
} from './constants.ts';

/** A topic's cutover: `streamCutoverBytes` clamped to [MIN_STREAM_CUTOVER_BYTES, STREAM_CUTOVER_BYTES]. */
export function cutoverOf(o: SubscribeOptions | undefined): number {
  return Math.max(MIN_STREAM_CUTOVER_BYTES, Math.min(STREAM_CUTOVER_BYTES, o?.streamCutoverBytes ?? STREAM_CUTOVER_BYTES));
}

/** Counting semaphore with a bounded wait queue: `acquire` resolves false when the queue is full. */
class Semaphore {
  private free: number;
  private readonly waiters: Array<() => void> = [];
  constructor(
    slots: number,
    private readonly maxQueue: number,
  ) {
    this.free = slots;
  }
  async acquire(): Promise<boolean> {
    if (this.free > 0) {
      this.free--;
      return true;
    }
    if (this.waiters.length >= this.maxQueue) return false;
    await new Promise<void>((resolve) => this.waiters.push(resolve));
    return true;
  }
  release(): void {
    const next = this.waiters.shift();
    if (next !== undefined) next();
    else this.free++;
  }
}

/** Envelope sealing and opening of one mesh, with its blob cache and the bounded pool of blob pulls. */
export class StreamCutover {
  private readonly blobs = new BlobStore();
  private readonly fetchSlots = new Semaphore(MAX_CONCURRENT_BLOB_FETCHES, MAX_QUEUED_BLOB_FETCHES);

  constructor(
    private readonly sync: RequestResponseProtocol,
    private readonly log: Logger,
  ) {
    sync.handle('blob', (body) => {
      const data = this.blobs.get(body);
      if (data === undefined) throw new RefusalError(RefusalReason.UNAVAILABLE, 'blob not cached here');
      return data;
    });
  }

  /** Drop every cached payload (mesh stop). */
  clear(): void {
    this.blobs.clear();
  }

  /** The envelope of an outbound payload: inline up to the topic's cutover, else cached and announced by hash. */
  seal(payload: Uint8Array, opts: SubscribeOptions | undefined): { envelope: Uint8Array; viaStream: boolean } {
    const viaStream = payload.byteLength > cutoverOf(opts);
    const env: Envelope = { version: WIRE_VERSION, timestampMs: BigInt(Date.now()) };
    if (viaStream) env.blob = { sha256: this.blobs.put(payload), size: BigInt(payload.byteLength) };
    else env.inline = payload;
    return { envelope: Envelope.encode(env), viaStream };
  }

  /**
   * Decode and check an inbound envelope (size, version, timestamp, exactly one of inline and blob), pulling an
   * announced blob from `via` or the author and checking its hash and size. Throws RefusalError.
   */
  async open(name: string, opts: SubscribeOptions, via: PeerId, msg: Message & { type: 'signed' }): Promise<{ payload: Uint8Array; meta: MessageMeta }> {
    if (msg.data.byteLength > MAX_ENVELOPE_BYTES) {
      throw new RefusalError(RefusalReason.OVERSIZED, `envelope of ${msg.data.byteLength} bytes`);
    }
    let env: Envelope;
    try {
      env = Envelope.decode(msg.data);
    } catch (err) {
      throw new RefusalError(RefusalReason.MALFORMED, 'envelope does not decode', { cause: err });
    }
    if (env.version !== WIRE_VERSION) throw new RefusalError(RefusalReason.UNSUPPORTED_VERSION, `envelope v${env.version}`);
    const now = Date.now();
    const ts = Number(env.timestampMs);
    if (ts > now + MAX_CLOCK_SKEW_MS) throw new RefusalError(RefusalReason.STALE, 'timestamp in the future');
    if (opts.maxAgeMs !== undefined && now - ts > opts.maxAgeMs) {
      throw new RefusalError(RefusalReason.STALE, 'message too old');
    }
    const maxPayload = Math.min(opts.maxPayloadBytes ?? MAX_BLOB_BYTES, MAX_BLOB_BYTES);
    const meta: MessageMeta = { topic: name, from: msg.from, via, timestampMs: ts, viaStream: false };
    if ((env.inline === undefined) === (env.blob === undefined)) {
      throw new RefusalError(RefusalReason.INVALID_FIELD, 'envelope needs exactly one of inline and blob');
    }
    const cutover = cutoverOf(opts);
    if (env.inline !== undefined) {
      if (env.inline.byteLength > Math.min(maxPayload, cutover)) {
        throw new RefusalError(RefusalReason.OVERSIZED, `inline payload of ${env.inline.byteLength} bytes`);
      }
      return { payload: env.inline, meta };
    }
    const blob = env.blob!;
    if (blob.sha256.byteLength !== 32) throw new RefusalError(RefusalReason.INVALID_FIELD, 'blob hash is not 32 bytes');
    if (blob.size <= BigInt(cutover)) {
      throw new RefusalError(RefusalReason.INVALID_FIELD, 'blob small enough to go inline');
    }
    if (blob.size > BigInt(maxPayload)) throw new RefusalError(RefusalReason.OVERSIZED, `blob of ${blob.size} bytes`);
    meta.viaStream = true;
    const cached = this.blobs.get(blob.sha256);
    if (cached === undefined && opts.wantPayload !== undefined && !opts.wantPayload(meta)) {
      throw new RefusalError(RefusalReason.UNAVAILABLE, 'announced payload not wanted here: not pulled');
    }
    const payload = cached ?? (await this.pull(name, blob.sha256, Number(blob.size), via, msg.from));
    return { payload, meta };
  }

  private async pull(name: string, hash: Uint8Array, size: number, via: PeerId, author: PeerId): Promise<Uint8Array> {
    if (!(await this.fetchSlots.acquire())) {
      throw new RefusalError(RefusalReason.CAPACITY, 'too many large payloads being fetched');
    }
    let payload: Uint8Array | undefined;
    let mismatch = false;
    try {
      payload = this.blobs.get(hash);
      const sources = via.equals(author) ? [via] : [via, author];
      for (const src of payload === undefined ? sources : []) {
        try {
          const got = await this.sync.request(src, 'blob', hash, { maxResponseBytes: size });
          if (got.byteLength !== size || !Buffer.from(sha256(got)).equals(Buffer.from(hash))) {
            mismatch = true;
            this.log.debug({ from: src.toString(), topic: name }, 'blob does not match its announcement');
            continue;
          }
          payload = got;
          break;
        } catch (err) {
          this.log.debug({ err: String(err), from: src.toString() }, 'blob fetch failed');
        }
      }
    } finally {
      this.fetchSlots.release();
    }
    if (payload === undefined) {
      throw mismatch
        ? new RefusalError(RefusalReason.BLOB_MISMATCH, 'served blob does not match its announced hash or size')
        : new RefusalError(RefusalReason.UNAVAILABLE, 'announced blob could not be fetched');
    }
    this.blobs.put(payload, hash);
    return payload;
  }
}
