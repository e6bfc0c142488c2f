/**
 * CountingProtector `yieldMs` (Mesh `loopYieldMs`, issue 17): inbound chunks that arrive as already-resolved promises
 * (the memory transport at latency 0) must not starve the event loop: a timer has to fire while they are consumed.
 */
import test from 'ava';
import type { MultiaddrConnection } from '@libp2p/interface';
import { CountingProtector } from '../../src/mesh/wire-counter.ts';

const CAP = 2_000_000;

function endless(): MultiaddrConnection {
  const chunk = new Uint8Array(8);
  return {
    source: (async function* () {
      for (;;) yield chunk;
    })(),
    sink: async () => {},
  } as unknown as MultiaddrConnection;
}

async function chunksUntilATimerFires(yieldMs: number): Promise<{ n: number; bytes: number }> {
  const counters = { bytesIn: 0, bytesOut: 0 };
  const conn = await new CountingProtector(counters, undefined, yieldMs).protect(endless());
  let fired = false;
  setTimeout(() => { fired = true; }, 0);
  let n = 0;
  for await (const _ of conn.source) {
    if (fired || ++n >= CAP) break;
  }
  return { n, bytes: counters.bytesIn };
}

test('with yieldMs a timer fires while an endless resolved-promise stream is read; every byte is still counted', async (t) => {
  const r = await chunksUntilATimerFires(5);
  t.true(r.n < CAP, `the timer fired after ${r.n} chunks`);
  t.is(r.bytes, (r.n + 1) * 8);
});

test('without yieldMs the same stream starves the timer (the failure the option exists for)', async (t) => {
  const r = await chunksUntilATimerFires(0);
  t.is(r.n, CAP);
});
