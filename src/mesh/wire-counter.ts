import type { ConnectionProtector, MultiaddrConnection } from '@libp2p/interface';

/** Bytes this node sent and received on all its transport connections, as the socket carries them (pnet, Noise, Yamux and all). */
export interface WireCounters {
  bytesIn: number;
  bytesOut: number;
}

type Chunk = Uint8Array | { byteLength: number };

// Process-wide: when the last turn of the event loop this gate saw, and the one pending turn every waiting connection shares.
let lastTurn = performance.now();
let turn: Promise<void> | undefined;

/**
 * A promise for the next event-loop turn when more than `maxMs` passed since the last one this gate saw (undefined
 * otherwise). Every connection waiting shares one setImmediate, so a burst of chunks costs one turn, not one each.
 */
function loopTurn(maxMs: number): Promise<void> | undefined {
  if (performance.now() - lastTurn < maxMs) return undefined;
  turn ??= new Promise((resolve) => setImmediate(() => {
    turn = undefined;
    lastTurn = performance.now();
    resolve();
  }));
  return turn;
}

/**
 * A libp2p connection protector that counts the raw socket bytes of every connection, then hands the
 * connection to an optional inner protector (the pnet pre-shared-key protector).
 *
 * `yieldMs` > 0: an inbound chunk waits for the next event-loop turn when the loop has not turned for that long
 * (Mesh `loopYieldMs`). For the memory transport at latency 0, whose chunks arrive as resolved promises: without it
 * an in-process mesh runs as one microtask chain and no timer fires (issue 17); its own latency (> 0) instead delays
 * each chunk by a timer one after the other, so a connection carries one chunk per event-loop turn, and at 32
 * in-process nodes (turns of 1-2 s) heartbeats queued behind round traffic arrived stale and views collapsed.
 */
export class CountingProtector implements ConnectionProtector {
  constructor(
    private readonly counters: WireCounters,
    private readonly inner?: ConnectionProtector,
    private readonly yieldMs = 0,
  ) {}

  async protect(connection: MultiaddrConnection, options?: Parameters<ConnectionProtector['protect']>[1]): Promise<MultiaddrConnection> {
    const raw = connection;
    const counters = this.counters;
    const source = raw.source;
    const sink = raw.sink;
    const yieldMs = this.yieldMs;
    raw.source = (async function* () {
      for await (const chunk of source) {
        counters.bytesIn += (chunk as Chunk).byteLength;
        if (yieldMs > 0) {
          const t = loopTurn(yieldMs);
          if (t !== undefined) await t;
        }
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
