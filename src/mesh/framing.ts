import { RefusalError, RefusalReason } from './errors.ts';

/** Anything a libp2p stream source yields: a Uint8Array or a Uint8ArrayList (which has `subarray()`). */
export type Chunk = Uint8Array | { subarray(): Uint8Array; byteLength: number };

const MAX_VARINT_BYTES = 5;

/** Encode one frame: unsigned LEB128 varint length, then the bytes. */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  const header: number[] = [];
  let n = payload.byteLength;
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    header.push(b);
  } while (n > 0);
  const out = new Uint8Array(header.length + payload.byteLength);
  out.set(header, 0);
  out.set(payload, header.length);
  return out;
}

/**
 * Reads length-prefixed frames from a stream source, refusing (with `RefusalError`) any frame whose declared
 * length exceeds the cap given to `next()`, a malformed length prefix, or a stream that ends mid-frame.
 * Never buffers more than one frame plus one network chunk.
 */
export class FrameReader {
  private readonly it: AsyncIterator<Chunk>;
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private done = false;

  constructor(source: AsyncIterable<Chunk>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    if (this.done) return false;
    const r = await this.it.next();
    if (r.done === true) {
      this.done = true;
      return false;
    }
    const bytes = r.value instanceof Uint8Array ? r.value : r.value.subarray();
    if (bytes.byteLength > 0) {
      this.chunks.push(bytes);
      this.buffered += bytes.byteLength;
    }
    return true;
  }

  private take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const k = Math.min(c.byteLength, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (k === c.byteLength) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }

  private peekByte(i: number): number {
    let idx = i;
    for (const c of this.chunks) {
      if (idx < c.byteLength) return c[idx];
      idx -= c.byteLength;
    }
    return -1;
  }

  /**
   * The next frame, or `null` when the stream ended cleanly between frames.
   * @param maxBytes frames declaring a larger length are refused with OVERSIZED before any body is read
   */
  async next(maxBytes: number): Promise<Uint8Array | null> {
    let len = -1;
    let headerLen = 0;
    for (;;) {
      let value = 0;
      let mul = 1;
      let complete = false;
      let i = 0;
      for (; i < Math.min(this.buffered, MAX_VARINT_BYTES); i++) {
        const b = this.peekByte(i);
        value += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (complete) {
        len = value;
        headerLen = i + 1;
        break;
      }
      if (this.buffered >= MAX_VARINT_BYTES) {
        throw new RefusalError(RefusalReason.MALFORMED, 'frame length prefix longer than 5 bytes');
      }
      if (!(await this.fill())) {
        if (this.buffered === 0) return null;
        throw new RefusalError(RefusalReason.MALFORMED, 'stream ended inside a frame length prefix');
      }
    }
    if (len > maxBytes) {
      throw new RefusalError(RefusalReason.OVERSIZED, `frame of ${len} bytes exceeds the limit of ${maxBytes}`);
    }
    this.take(headerLen);
    while (this.buffered < len) {
      if (!(await this.fill())) {
        throw new RefusalError(RefusalReason.MALFORMED, `stream ended inside a ${len}-byte frame`);
      }
    }
    return this.take(len);
  }
}
