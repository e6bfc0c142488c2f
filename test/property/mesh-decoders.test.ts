import test from 'ava';
import fc from 'fast-check';
import { FrameReader, encodeFrame, RefusalError, RefusalReason } from '../../src/mesh/index.ts';
import { Envelope } from '../../src/mesh/pb/envelope.ts';
import { Heartbeat } from '../../src/mesh/pb/membership.ts';
import { StreamRequest, StreamResponse } from '../../src/mesh/pb/sync.ts';

async function* chunked(bytes: Uint8Array, cuts: number[]): AsyncGenerator<Uint8Array> {
  let off = 0;
  for (const c of cuts) {
    const end = Math.min(bytes.byteLength, off + c);
    yield bytes.subarray(off, end);
    off = end;
  }
  if (off < bytes.byteLength) yield bytes.subarray(off);
}

test('frames round-trip through any chunking', async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 50 }), { maxLength: 40 }),
      async (frames, cuts) => {
        const wire = new Uint8Array(frames.reduce((n, f) => n + encodeFrame(f).byteLength, 0));
        let off = 0;
        for (const f of frames) {
          const e = encodeFrame(f);
          wire.set(e, off);
          off += e.byteLength;
        }
        const r = new FrameReader(chunked(wire, cuts));
        for (const f of frames) t.deepEqual(await r.next(300), f);
        t.is(await r.next(300), null);
      },
    ),
    { seed: 42, numRuns: 200 },
  );
});

test('the frame reader only ever fails with a RefusalError on random bytes, and never buffers past the cap', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), fc.integer({ min: 0, max: 1000 }), async (bytes, cap) => {
      const r = new FrameReader(chunked(bytes, [7, 13, 300]));
      try {
        for (;;) {
          const f = await r.next(cap);
          if (f === null) break;
          t.true(f.byteLength <= cap);
        }
      } catch (err) {
        t.true(err instanceof RefusalError);
        t.true([RefusalReason.MALFORMED, RefusalReason.OVERSIZED].includes((err as RefusalError).reason));
      }
    }),
    { seed: 7, numRuns: 300 },
  );
});

test('protobuf decoders throw only plain errors on random bytes (callers map them to MALFORMED)', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
      for (const dec of [Envelope.decode, Heartbeat.decode, StreamRequest.decode, StreamResponse.decode]) {
        try {
          dec(bytes);
        } catch (err) {
          t.true(err instanceof Error);
        }
      }
    }),
    { seed: 3, numRuns: 500 },
  );
});

test('a declared frame length above the cap is refused before any body byte is read', async (t) => {
  let pulled = 0;
  async function* src(): AsyncGenerator<Uint8Array> {
    yield new Uint8Array([0x80, 0x80, 0x80, 0x40]); // 2^27 bytes declared
    for (;;) {
      pulled++;
      yield new Uint8Array(1024);
    }
  }
  const err = await t.throwsAsync(new FrameReader(src()).next(1 << 20), { instanceOf: RefusalError });
  t.is(err.reason, RefusalReason.OVERSIZED);
  t.is(pulled, 0);
});
