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
 * Deliver each chunk of `source` `latencyMs` after it arrived, pipelined: chunks that arrive while earlier ones wait
 * are not delayed one after another, and each timer hands over every chunk due by then. Every chunk still passes
 * through a timer, so the event loop turns between one hop of a message and the next (an in-process mesh is not one
 * microtask chain). Chunks keep their order; an error of `source` is thrown after the chunks received before it.
 *
 * Why (issue 17): @libp2p/memory's own latency awaits one timer per chunk, one chunk after another, so a connection
 * direction carries one chunk per event-loop turn. At 64 in-process nodes (turns of ~1 s) the links that relay
 * gossip needed ~4 chunks a second: their queues grew without bound and heartbeats arrived older than their 90 s
 * expiry (STALE refusals growing ~90/s with an event-loop lag of only 0.7 s).
 */
export function pipelinedLatency<T>(source: AsyncIterable<T>, latencyMs: number): AsyncGenerator<T> {
  return (async function* () {
    const q: { chunk: T; due: number }[] = [];
    let head = 0;
    let wake: (() => void) | undefined;
    let ended = false;
    let stopped = false;
    let failed = false;
    let failure: unknown;
    const it = source[Symbol.asyncIterator]();
    void (async () => {
      try {
        // Stops reading once the consumer is gone (its return(): the connection closed on this side), so the queue
        // does not keep filling until the remote end closes.
        while (!stopped) {
          const r = await it.next();
          if (r.done || stopped) break;
          q.push({ chunk: r.value, due: performance.now() + latencyMs });
          wake?.();
        }
      } catch (err) {
        failed = true;
        failure = err;
      } finally {
        ended = true;
        wake?.();
      }
    })();
    try {
      for (;;) {
        if (head === q.length) {
          q.length = 0;
          head = 0;
          if (failed) throw failure;
          if (ended) return;
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
          continue;
        }
        // Timers fire on a ms clock, up to 1 ms before performance.now() says they are due: every chunk due within
        // 1 ms goes with this timer.
        await new Promise((r) => setTimeout(r, Math.max(0, q[head].due - performance.now())));
        const now = performance.now() + 1;
        while (head < q.length && q[head].due <= now) {
          const { chunk } = q[head];
          q[head++] = undefined as unknown as { chunk: T; due: number };
          yield chunk;
        }
      }
    } finally {
      if (!ended) {
        stopped = true;
        q.length = 0;
        void Promise.resolve(it.return?.()).catch(() => undefined);
      }
    }
  })();
}

/** Whether a connection runs over the in-process memory transport (`/memory/<name>` addresses). */
function isMemory(connection: MultiaddrConnection): boolean {
  return connection.remoteAddr.toString().startsWith('/memory/');
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
 *
 * `memoryLatencyMs` > 0: inbound chunks of memory-transport connections are delivered that long after they arrived,
 * pipelined (pipelinedLatency; Mesh `memoryLatencyMs`). TCP connections are never delayed.
 */
export class CountingProtector implements ConnectionProtector {
  constructor(
    private readonly counters: WireCounters,
    private readonly inner?: ConnectionProtector,
    private readonly yieldMs = 0,
    private readonly memoryLatencyMs = 0,
  ) {}

  async protect(connection: MultiaddrConnection, options?: Parameters<ConnectionProtector['protect']>[1]): Promise<MultiaddrConnection> {
    const raw = connection;
    const counters = this.counters;
    const source = this.memoryLatencyMs > 0 && isMemory(raw) ? pipelinedLatency(raw.source, this.memoryLatencyMs) : raw.source;
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
