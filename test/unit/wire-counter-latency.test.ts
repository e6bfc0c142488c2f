/**
 * CountingProtector `memoryLatencyMs` (Mesh `memoryLatencyMs`, issue 17): inbound chunks of a memory-transport
 * connection pass through a timer (the event loop turns between hops), pipelined: a burst is handed over by one timer,
 * not one timer per chunk as @libp2p/memory's own latency does. TCP connections are not delayed. No timing assertions:
 * "turns" are counted by a setImmediate chain.
 */
import test from 'ava';
import { multiaddr } from '@multiformats/multiaddr';
import { pushable } from 'it-pushable';
import type { MultiaddrConnection } from '@libp2p/interface';
import { CountingProtector, pipelinedLatency } from '../../src/mesh/wire-counter.ts';

/** A counter advanced once per event-loop turn (check phase) until stopped. */
function turnCounter(): { now: () => number; stop: () => void } {
  let n = 0;
  let on = true;
  const tick = (): void => {
    n++;
    if (on) setImmediate(tick);
  };
  setImmediate(tick);
  return { now: () => n, stop: () => { on = false; } };
}

function conn(addr: string, source: AsyncIterable<Uint8Array>): MultiaddrConnection {
  return { source, sink: async () => {}, remoteAddr: multiaddr(addr) } as unknown as MultiaddrConnection;
}

test('a burst of chunks is delivered in order by one timer, after at least one loop turn', async (t) => {
  const turns = turnCounter();
  const src = pushable<Uint8Array>();
  const sent = turns.now();
  for (let i = 0; i < 50; i++) src.push(Uint8Array.of(i));
  src.end();
  const got: { v: number; turn: number }[] = [];
  for await (const c of pipelinedLatency(src, 1)) got.push({ v: c[0], turn: turns.now() });
  turns.stop();
  t.deepEqual(got.map((g) => g.v), Array.from({ length: 50 }, (_, i) => i));
  t.true(got[0].turn > sent, 'the first chunk waited for the loop to turn');
  // One timer takes every chunk due within 1 ms of it; a pause while the 50 are queued can split them over two.
  t.true(new Set(got.map((g) => g.turn)).size <= 2, 'the 50 queued chunks came in one or two turns (not one turn per chunk)');
});

test('a consumer that stops early stops the reading of the source', async (t) => {
  let pulled = 0;
  let closed = false;
  const src = (async function* () {
    try {
      for (;;) {
        await new Promise((r) => setTimeout(r, 1));
        yield Uint8Array.of(pulled++ & 255);
      }
    } finally {
      closed = true;
    }
  })();
  for await (const c of pipelinedLatency(src, 1)) {
    t.is(c[0], 0);
    break;
  }
  await new Promise((r) => setTimeout(r, 30));
  t.true(closed, "the consumer's return ended the source");
  const after = pulled;
  await new Promise((r) => setTimeout(r, 30));
  t.is(pulled, after, 'nothing more is read from it');
});

test('an error of the source is thrown after the chunks that came before it', async (t) => {
  const src = (async function* () {
    yield Uint8Array.of(1);
    yield Uint8Array.of(2);
    throw new Error('aborted');
  })();
  const got: number[] = [];
  const err = await t.throwsAsync(async () => {
    for await (const c of pipelinedLatency(src, 1)) got.push(c[0]);
  });
  t.is(err?.message, 'aborted');
  t.deepEqual(got, [1, 2]);
});

test('the protector delays memory connections only, and counts every byte either way', async (t) => {
  for (const [addr, delayed] of [['/memory/x-1/p2p/12D3KooWGRUVh8fKV4Vv6bDq1Aw8hTAnVD1hDqUVHBZpoaxyqBso', true], ['/ip4/127.0.0.1/tcp/1', false]] as const) {
    const counters = { bytesIn: 0, bytesOut: 0 };
    const src = pushable<Uint8Array>();
    const c = await new CountingProtector(counters, undefined, 0, 5).protect(conn(addr, src));
    const turns = turnCounter();
    const sent = turns.now();
    src.push(new Uint8Array(7));
    src.end();
    let turn = -1;
    for await (const _ of c.source) turn = turns.now();
    turns.stop();
    t.is(counters.bytesIn, 7);
    t.is(turn > sent, delayed, `${addr}: delivered after a loop turn = ${delayed}`);
  }
});
