import test from 'ava';
import fc from 'fast-check';
import sharp from 'sharp';
import { decodeImage, ImageDecodeError, type DecodeSpec } from '../../src/data/index.ts';
import { writeDicom } from '../dicom-writer.ts';

const NAMES = ['a.png', 'a.jpg', 'a.jpeg', 'a.webp', 'a.tif', 'a.tiff', 'a.dcm', 'IM0001', 'a.gif', 'a.PNG'];
const SPECS: DecodeSpec[] = [{ size: 8, channels: 1 }, { size: 28, channels: 3 }];

/** Decoding either yields exactly C*S*S bytes or throws ImageDecodeError; anything else fails the property. */
async function decodesOrRefuses(bytes: Uint8Array, name: string, spec: DecodeSpec): Promise<boolean> {
  try {
    const out = await decodeImage(bytes, name, spec);
    return out.length === spec.channels * spec.size * spec.size;
  } catch (err) {
    return err instanceof ImageDecodeError && err.message.startsWith(`${name}: `);
  }
}

let seeds: Uint8Array[] = [];
test.before(async () => {
  const px = Buffer.alloc(12 * 10);
  for (let i = 0; i < px.length; i++) px[i] = (i * 13) % 256;
  const raw = { raw: { width: 12, height: 10, channels: 1 as const } };
  seeds = [
    await sharp(px, raw).png().toBuffer(),
    await sharp(px, raw).jpeg().toBuffer(),
    await sharp(px, raw).webp().toBuffer(),
    await sharp(px, raw).tiff().toBuffer(),
    writeDicom({ rows: 10, columns: 12, pixels: new Uint16Array(120).map((_, i) => i * 300), window: { center: 2000, width: 3000 } }),
  ];
});

test('decodeImage on random bytes throws only ImageDecodeError', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), fc.constantFrom(...NAMES), fc.constantFrom(...SPECS), decodesOrRefuses),
    { numRuns: 300 },
  );
  t.pass();
});

test('decodeImage on mutated and truncated valid files (PNG, JPEG, WebP, TIFF, DICOM) decodes or throws only ImageDecodeError', async (t) => {
  const mutated = fc
    .tuple(
      fc.nat({ max: 4 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      fc.option(fc.nat(), { nil: undefined }),
    )
    .map(([k, edits, cut]) => {
      const b = Uint8Array.from(seeds[k]);
      for (const [pos, v] of edits) b[pos % b.length] = v;
      return cut === undefined ? b : b.subarray(0, cut % (b.length + 1));
    });
  await fc.assert(fc.asyncProperty(mutated, fc.constantFrom(...NAMES.slice(0, 8)), fc.constantFrom(...SPECS), decodesOrRefuses), { numRuns: 400 });
  t.pass();
});
