import type { ConnectionProtector, MultiaddrConnection } from '@libp2p/interface';

/** Bytes this node sent and received on all its transport connections, as the socket carries them (pnet, Noise, Yamux and all). */
export interface WireCounters {
  bytesIn: number;
  bytesOut: number;
}

type Chunk = Uint8Array | { byteLength: number };

/**
 * A libp2p connection protector that counts the raw socket bytes of every connection, then hands the
 * connection to an optional inner protector (the pnet pre-shared-key protector).
 */
export class CountingProtector implements ConnectionProtector {
  constructor(
    private readonly counters: WireCounters,
    private readonly inner?: ConnectionProtector,
  ) {}

  async protect(connection: MultiaddrConnection, options?: Parameters<ConnectionProtector['protect']>[1]): Promise<MultiaddrConnection> {
    const raw = connection;
    const counters = this.counters;
    const source = raw.source;
    const sink = raw.sink;
    raw.source = (async function* () {
      for await (const chunk of source) {
        counters.bytesIn += (chunk as Chunk).byteLength;
        yield chunk;
      }
    })();
    raw.sink = async (src) => {
      await sink(
        (async function* () {
          for await (const chunk of src) {
            counters.bytesOut += (chunk as Chunk).byteLength;
            yield chunk;
          }
        })(),
      );
    };
    return this.inner !== undefined ? this.inner.protect(raw, options) : raw;
  }
}
