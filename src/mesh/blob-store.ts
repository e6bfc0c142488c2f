import { createHash } from 'node:crypto';
import { BLOB_CACHE_MAX_BYTES, BLOB_CACHE_MAX_ENTRIES, BLOB_CACHE_TTL_MS } from './constants.ts';

/** SHA-256 of `data`. */
export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest());
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/**
 * Bounded, content-addressed cache of large payloads that this node published or relayed, served to
 * neighbours over the sync stream. Oldest entries are evicted first when a count, byte or age bound is hit.
 */
export class BlobStore {
  private readonly entries = new Map<string, { data: Uint8Array; at: number }>();
  private bytes = 0;

  constructor(
    private readonly maxEntries = BLOB_CACHE_MAX_ENTRIES,
    private readonly maxBytes = BLOB_CACHE_MAX_BYTES,
    private readonly ttlMs = BLOB_CACHE_TTL_MS,
  ) {}

  /** Store `data` under its SHA-256; returns the hash. */
  put(data: Uint8Array, hash = sha256(data)): Uint8Array {
    const key = hex(hash);
    if (!this.entries.has(key)) {
      this.entries.set(key, { data, at: Date.now() });
      this.bytes += data.byteLength;
      this.evict();
    }
    return hash;
  }

  /** The payload with this SHA-256, if cached and not expired. */
  get(hash: Uint8Array): Uint8Array | undefined {
    if (hash.byteLength !== 32) return undefined;
    const e = this.entries.get(hex(hash));
    if (e === undefined) return undefined;
    if (Date.now() - e.at > this.ttlMs) {
      this.entries.delete(hex(hash));
      this.bytes -= e.data.byteLength;
      return undefined;
    }
    return e.data;
  }

  /** Number of cached payloads. */
  get size(): number {
    return this.entries.size;
  }

  /** Drop everything. */
  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  private evict(): void {
    const now = Date.now();
    for (const [k, e] of this.entries) {
      const over = this.entries.size > this.maxEntries || this.bytes > this.maxBytes || now - e.at > this.ttlMs;
      if (!over) break;
      this.entries.delete(k);
      this.bytes -= e.data.byteLength;
    }
  }
}
