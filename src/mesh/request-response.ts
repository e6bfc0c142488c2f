import { pipe } from 'it-pipe';
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { StreamRequest, StreamResponse } from './pb/sync.ts';
import { FrameReader, encodeFrame } from './framing.ts';
import { RefusalError, RefusalReason } from './errors.ts';
import {
  DEFAULT_MAX_RESPONSE_BYTES,
  DEFAULT_REQUEST_TIMEOUT_MS,
  MAX_BLOB_BYTES,
  MAX_FRAME_BYTES,
  MAX_REFUSAL_MESSAGE_CHARS,
  MAX_REQUEST_BYTES,
  MAX_STREAMS_PER_CONNECTION,
  METHOD_NAME_RE,
  RESPONSE_CHUNK_BYTES,
  WIRE_VERSION,
} from './constants.ts';

/** Largest StreamResponse header frame. */
const MAX_RESPONSE_HEADER_BYTES = MAX_REFUSAL_MESSAGE_CHARS * 4 + 64;
/** Largest StreamRequest frame (body + method + protobuf overhead). */
const MAX_REQUEST_FRAME_BYTES = MAX_REQUEST_BYTES + 128;

/** What a request handler sees. */
export interface RequestContext {
  /** The requesting peer (authenticated by the Noise handshake). */
  peer: PeerId;
  /** The handler's method name. */
  method: string;
  /** The connection the stream arrived on. */
  connection: Connection;
  /** Aborted when the exchange times out or the node stops. */
  signal: AbortSignal;
}

/**
 * A request handler: returns the response body (at most MAX_BLOB_BYTES), or throws `RefusalError` to refuse with a
 * reason code. Any other error is reported to the peer as UNAVAILABLE without details.
 */
export type RequestHandler = (body: Uint8Array, ctx: RequestContext) => Promise<Uint8Array> | Uint8Array;

/** Per-protocol limits of a request/response endpoint. All finite; see protocols/LIMITS.md. */
export interface RequestResponseLimits {
  /** Largest request body accepted (default MAX_REQUEST_BYTES). */
  maxRequestBytes?: number;
  /** Deadline of one inbound exchange (default DEFAULT_REQUEST_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Concurrent inbound/outbound streams per connection (default MAX_STREAMS_PER_CONNECTION). */
  maxStreams?: number;
}

/** Options of one outbound request. */
export interface RequestOptions {
  /** Deadline of the whole exchange (default DEFAULT_REQUEST_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Refuse a response body larger than this (default and ceiling MAX_BLOB_BYTES). */
  maxResponseBytes?: number;
  /** Abort the request early. */
  signal?: AbortSignal;
}

function responseHeader(status: number, message: string, size: number): Uint8Array {
  return encodeFrame(
    StreamResponse.encode({ status, message: message.slice(0, MAX_REFUSAL_MESSAGE_CHARS), size: BigInt(size) }),
  );
}

function* bodyFrames(body: Uint8Array): Generator<Uint8Array> {
  for (let off = 0; off < body.byteLength; off += RESPONSE_CHUNK_BYTES) {
    yield encodeFrame(body.subarray(off, Math.min(body.byteLength, off + RESPONSE_CHUNK_BYTES)));
  }
}

function asRefusal(err: unknown, signal: AbortSignal | undefined, what: string): RefusalError {
  if (err instanceof RefusalError) return err;
  if (signal?.aborted === true) return new RefusalError(RefusalReason.TIMEOUT, `${what} timed out or was aborted`);
  return new RefusalError(RefusalReason.UNAVAILABLE, `${what} failed: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
  });
}

/**
 * One request/response stream protocol (e.g. `/fmfl/<federation>/sync/1.0.0`): one request per stream, methods
 * dispatched by name, length-prefixed protobuf frames, bounded sizes and deadlines. Wire format: protocols/sync.md.
 */
export class RequestResponseProtocol {
  readonly protocol: string;
  private readonly handlers = new Map<string, RequestHandler>();
  private readonly limits: Required<RequestResponseLimits>;
  private readonly onRefusal: (reason: RefusalReason, peer: PeerId | undefined) => void;
  private readonly active = new Set<AbortController>();

  constructor(
    private readonly libp2p: Libp2p,
    protocol: string,
    limits: RequestResponseLimits = {},
    onRefusal: (reason: RefusalReason, peer: PeerId | undefined) => void = () => {},
  ) {
    this.protocol = protocol;
    this.limits = {
      maxRequestBytes: Math.min(limits.maxRequestBytes ?? MAX_REQUEST_BYTES, MAX_REQUEST_BYTES),
      timeoutMs: limits.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      maxStreams: limits.maxStreams ?? MAX_STREAMS_PER_CONNECTION,
    };
    this.onRefusal = onRefusal;
  }

  /** Register the protocol with libp2p. */
  async start(): Promise<void> {
    await this.libp2p.handle(
      this.protocol,
      ({ stream, connection }) => {
        void this.serve(stream, connection);
      },
      { maxInboundStreams: this.limits.maxStreams, maxOutboundStreams: this.limits.maxStreams },
    );
  }

  /** Unregister the protocol and abort exchanges in flight. */
  async stop(): Promise<void> {
    for (const c of this.active) c.abort();
    this.active.clear();
    await this.libp2p.unhandle(this.protocol).catch(() => {});
  }

  /** Add a handler for `method` (1..64 chars of [a-z0-9._-]); replaces any previous one. */
  handle(method: string, handler: RequestHandler): void {
    if (!METHOD_NAME_RE.test(method)) throw new RangeError(`invalid method name "${method}"`);
    this.handlers.set(method, handler);
  }

  /** Remove the handler for `method`. */
  unhandle(method: string): void {
    this.handlers.delete(method);
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const ctl = new AbortController();
    this.active.add(ctl);
    const timer = setTimeout(() => ctl.abort(), this.limits.timeoutMs);
    const onAbort = (): void => stream.abort(new Error('request deadline exceeded'));
    ctl.signal.addEventListener('abort', onAbort, { once: true });
    const peer = connection.remotePeer;
    let status = 0;
    let message = '';
    let body: Uint8Array = new Uint8Array(0);
    try {
      try {
        const reader = new FrameReader(stream.source);
        const frame = await reader.next(Math.min(MAX_REQUEST_FRAME_BYTES, this.limits.maxRequestBytes + 128));
        if (frame === null) throw new RefusalError(RefusalReason.MALFORMED, 'no request frame');
        let req: StreamRequest;
        try {
          req = StreamRequest.decode(frame);
        } catch (err) {
          throw new RefusalError(RefusalReason.MALFORMED, 'request frame does not decode', { cause: err });
        }
        if (req.version !== WIRE_VERSION) {
          throw new RefusalError(RefusalReason.UNSUPPORTED_VERSION, `request version ${req.version} is not ${WIRE_VERSION}`);
        }
        if (req.body.byteLength > this.limits.maxRequestBytes) {
          throw new RefusalError(RefusalReason.OVERSIZED, `request body exceeds ${this.limits.maxRequestBytes} bytes`);
        }
        const handler = this.handlers.get(req.method);
        if (!METHOD_NAME_RE.test(req.method) || handler === undefined) {
          throw new RefusalError(RefusalReason.UNKNOWN_METHOD, `no handler for method "${req.method.slice(0, 64)}"`);
        }
        body = await handler(req.body, { peer, method: req.method, connection, signal: ctl.signal });
        if (body.byteLength > MAX_BLOB_BYTES) {
          throw new RefusalError(RefusalReason.UNAVAILABLE, 'response too large');
        }
      } catch (err) {
        const r = asRefusal(err, ctl.signal, 'request');
        status = r.reason;
        message = r.reason === RefusalReason.UNAVAILABLE && !(err instanceof RefusalError) ? 'handler failed' : r.message;
        body = new Uint8Array(0);
        // A handler's own UNAVAILABLE ("no certified state ahead of you", "no such step here") answers a
        // well-formed request; it is not a refusal of the peer's input, so it stays out of the refusal counts.
        const answered = err instanceof RefusalError && r.reason === RefusalReason.UNAVAILABLE;
        if (!answered) this.onRefusal(r.reason, peer);
      }
      if (ctl.signal.aborted) return;
      const header = responseHeader(status, message, body.byteLength);
      const payload = body;
      // Frames flow into the stream through it-pipe; the reading side is the bounded FrameReader.
      await pipe(
        (function* () {
          yield header;
          yield* bodyFrames(payload);
        })(),
        stream.sink,
      );
      await stream.close();
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
    } finally {
      clearTimeout(timer);
      ctl.signal.removeEventListener('abort', onAbort);
      this.active.delete(ctl);
    }
  }

  /**
   * Send one request to `peer` and return the response body. Throws `RefusalError` (the peer's reason code, or
   * TIMEOUT / OVERSIZED / MALFORMED / UNAVAILABLE for local failures).
   */
  async request(
    peer: PeerId | Multiaddr,
    method: string,
    body: Uint8Array,
    opts: RequestOptions = {},
  ): Promise<Uint8Array> {
    if (!METHOD_NAME_RE.test(method)) throw new RangeError(`invalid method name "${method}"`);
    if (body.byteLength > MAX_REQUEST_BYTES) {
      throw new RefusalError(RefusalReason.OVERSIZED, `request body exceeds ${MAX_REQUEST_BYTES} bytes`);
    }
    const maxResponse = Math.min(opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES, MAX_BLOB_BYTES);
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
    const signal = opts.signal !== undefined ? AbortSignal.any([timeout, opts.signal]) : timeout;
    let stream: Stream | undefined;
    const onAbort = (): void => stream?.abort(new Error('request aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      stream = await this.libp2p.dialProtocol(peer, this.protocol, { signal });
      const frame = encodeFrame(StreamRequest.encode({ version: WIRE_VERSION, method, body }));
      const reader = new FrameReader(stream.source);
      await pipe([frame], stream.sink);
      const headerBytes = await reader.next(MAX_RESPONSE_HEADER_BYTES);
      if (headerBytes === null) throw new RefusalError(RefusalReason.MALFORMED, 'stream closed without a response');
      let header: StreamResponse;
      try {
        header = StreamResponse.decode(headerBytes);
      } catch (err) {
        throw new RefusalError(RefusalReason.MALFORMED, 'response header does not decode', { cause: err });
      }
      if (header.status !== 0) {
        const reason = RefusalReason[header.status] !== undefined ? (header.status as RefusalReason) : RefusalReason.UNAVAILABLE;
        throw new RefusalError(reason, `peer refused: ${RefusalReason[reason]}: ${header.message.slice(0, MAX_REFUSAL_MESSAGE_CHARS)}`);
      }
      if (header.size > BigInt(maxResponse)) {
        throw new RefusalError(RefusalReason.OVERSIZED, `response of ${header.size} bytes exceeds ${maxResponse}`);
      }
      const size = Number(header.size);
      const out = new Uint8Array(size);
      let off = 0;
      while (off < size) {
        const chunk = await reader.next(Math.min(RESPONSE_CHUNK_BYTES, size - off));
        if (chunk === null) throw new RefusalError(RefusalReason.MALFORMED, `response ended after ${off} of ${size} bytes`);
        if (chunk.byteLength === 0) throw new RefusalError(RefusalReason.MALFORMED, 'empty data frame');
        out.set(chunk, off);
        off += chunk.byteLength;
      }
      if ((await reader.next(MAX_FRAME_BYTES)) !== null) {
        throw new RefusalError(RefusalReason.MALFORMED, 'extra data after the response body');
      }
      await stream.close({ signal }).catch(() => {});
      return out;
    } catch (err) {
      stream?.abort(err instanceof Error ? err : new Error(String(err)));
      throw asRefusal(err, signal, `request ${method} to ${peer.toString()}`);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}
