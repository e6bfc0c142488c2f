import test from 'ava';
import sharp from 'sharp';
import { decodeImage, decodeDicomGrey, sniffImageFormat, ImageDecodeError, DatasetError, IMAGE_EXTENSIONS } from '../../src/data/index.ts';
import { writeDicom } from '../dicom-writer.ts';

const grey = (w: number, h: number, f: (x: number, y: number) => number): Buffer => {
  const b = Buffer.alloc(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) b[y * w + x] = f(x, y);
  return b;
};
const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(a, b) === 0;

test('IMAGE_EXTENSIONS lists the documented types', (t) => {
  t.deepEqual([...IMAGE_EXTENSIONS], ['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.dcm']);
});

test('an 8-bit greyscale PNG of the target size decodes to its exact pixels; the same pixels as WebP (lossless) and TIFF too', async (t) => {
  const px = grey(28, 28, (x, y) => (x * 9 + y * 31) % 256);
  const raw = { raw: { width: 28, height: 28, channels: 1 as const } };
  const png = await sharp(px, raw).png().toBuffer();
  t.true(same(await decodeImage(png, 'a.png', { size: 28, channels: 1 }), px));
  const webp = await sharp(px, raw).webp({ lossless: true }).toBuffer();
  t.true(same(await decodeImage(webp, 'a.webp', { size: 28, channels: 1 }), px));
  const tiff = await sharp(px, raw).tiff({ compression: 'lzw' }).toBuffer();
  t.true(same(await decodeImage(tiff, 'a.tif', { size: 28, channels: 1 }), px));
  // Format from the magic bytes: no extension, or a misleading one.
  t.true(same(await decodeImage(png, 'IM0001', { size: 28, channels: 1 }), px));
  t.true(same(await decodeImage(png, 'really-a-png.jpg', { size: 28, channels: 1 }), px));
  t.is(sniffImageFormat(webp), 'webp');
  t.is(sniffImageFormat(tiff), 'tiff');
});

test('channels 3 replicates grey into three CHW planes', async (t) => {
  const px = grey(28, 28, (x, y) => (x + 3 * y) % 256);
  const png = await sharp(px, { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
  const out = await decodeImage(png, 'a.png', { size: 28, channels: 3 });
  t.is(out.length, 3 * 784);
  for (let c = 0; c < 3; c++) t.true(same(out.subarray(c * 784, (c + 1) * 784), px));
});

test('RGB to grey is libvips luminance (red 127, green 220, blue 76); RGB output is planar R, G, B', async (t) => {
  const rgb = Buffer.alloc(8 * 8 * 3);
  for (let i = 0; i < 64; i++) rgb.set(i < 16 ? [255, 0, 0] : i < 32 ? [0, 255, 0] : i < 48 ? [0, 0, 255] : [90, 90, 90], i * 3);
  const png = await sharp(rgb, { raw: { width: 8, height: 8, channels: 3 } }).png().toBuffer();
  const g = await decodeImage(png, 'c.png', { size: 8, channels: 1 });
  t.deepEqual([g[0], g[16], g[32], g[48]], [127, 220, 76, 90]);
  const c = await decodeImage(png, 'c.png', { size: 8, channels: 3 });
  t.deepEqual([c[0], c[64], c[128]], [255, 0, 0]);
  t.deepEqual([c[16], c[64 + 16], c[128 + 16]], [0, 255, 0]);
  t.deepEqual([c[32], c[64 + 32], c[128 + 32]], [0, 0, 255]);
});

test('16-bit greyscale is scaled by v >> 8 (not rounded v / 257)', async (t) => {
  const v16 = new Uint16Array(16 * 16);
  const want = Buffer.alloc(v16.length);
  for (let i = 0; i < v16.length; i++) {
    want[i] = i % 256;
    v16[i] = (want[i] << 8) | (0xff - (i % 256)); // low byte large where the high byte is small: v/257 would round up
  }
  const png = await sharp(v16, { raw: { width: 16, height: 16, channels: 1 } }).toColourspace('grey16').png().toBuffer();
  t.is((await sharp(png).metadata()).depth, 'ushort');
  t.true(same(await decodeImage(png, 'deep.png', { size: 16, channels: 1 }), want));
  const three = await decodeImage(png, 'deep.png', { size: 16, channels: 3 });
  t.true(same(three.subarray(256, 512), want));
});

test('alpha is flattened onto black', async (t) => {
  const big = Buffer.alloc(8 * 8 * 2);
  for (let i = 0; i < 64; i++) big.set([200, i < 32 ? 255 : i < 48 ? 0 : 128], i * 2);
  const png8 = await sharp(big, { raw: { width: 8, height: 8, channels: 2 } }).png().toBuffer();
  const out = await decodeImage(png8, 'a.png', { size: 8, channels: 1 });
  t.is(out[0], 200);
  t.is(out[40], 0);
  t.true(Math.abs(out[63] - 100) <= 1, `half-transparent 200 over black = ${out[63]}`);
});

test('resize covers and centre-crops (keeps the aspect ratio, no stretching)', async (t) => {
  const wide = grey(56, 28, (x) => x * 4);
  const png = await sharp(wide, { raw: { width: 56, height: 28, channels: 1 } }).png().toBuffer();
  const out = await decodeImage(png, 'w.png', { size: 28, channels: 1 });
  for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) if (out[y * 28 + x] !== (x + 14) * 4) return t.fail(`pixel ${x},${y} = ${out[y * 28 + x]}`);
  // Down- and upscaling give the requested size.
  t.is((await decodeImage(png, 'w.png', { size: 8, channels: 3 })).length, 3 * 64);
  t.is((await decodeImage(png, 'w.png', { size: 64, channels: 1 })).length, 64 * 64);
  t.pass();
});

test('decodeImage refuses bad input with ImageDecodeError saying what is wrong', async (t) => {
  const png = await sharp(grey(8, 8, () => 5), { raw: { width: 8, height: 8, channels: 1 } }).png().toBuffer();
  const spec = { size: 8, channels: 1 as const };
  const e1 = await t.throwsAsync(decodeImage(png.subarray(0, png.length - 20), 'cut.png', spec), { instanceOf: ImageDecodeError });
  t.regex(e1.message, /cut\.png: .*corrupt/);
  t.true(e1 instanceof DatasetError);
  await t.throwsAsync(decodeImage(png, 'a.gif', spec), { instanceOf: ImageDecodeError, message: /unsupported file type '\.gif'/ });
  await t.throwsAsync(decodeImage(Buffer.from('hello world'), 'a.png', spec), { instanceOf: ImageDecodeError, message: /not a PNG, JPEG, WebP, TIFF or DICOM/ });
  const gif = await sharp(grey(8, 8, () => 5), { raw: { width: 8, height: 8, channels: 1 } }).gif().toBuffer();
  await t.throwsAsync(decodeImage(gif, 'noext', spec), { instanceOf: ImageDecodeError, message: /not a PNG/ });
  await t.throwsAsync(decodeImage(new Uint8Array(64 * 1024 * 1024 + 1), 'big.png', spec), { instanceOf: ImageDecodeError, message: /limit/ });
  // The spec is the caller's: a plain DatasetError, not a decode error.
  const e2 = await t.throwsAsync(decodeImage(png, 'a.png', { size: 3, channels: 1 }), { instanceOf: DatasetError });
  t.false(e2 instanceof ImageDecodeError);
  await t.throwsAsync(decodeImage(png, 'a.png', { size: 8, channels: 2 as never }), { instanceOf: DatasetError, message: /channels/ });
});

// DICOM: m = stored * slope + intercept; LINEAR window (c, w): y = ((m - (c - 0.5)) / (w - 1) + 0.5) * 255 inside.
test('DICOM: rescale then the PS3.3 linear window, values computed by hand', (t) => {
  // slope 2, intercept -1024, c = 1000, w = 500 → window edges 750 and 1249.
  // stored 1000 → m = 976  → ((976 - 999.5) / 499 + 0.5) * 255 = 115.49 → 115
  // stored 1100 → m = 1176 → ((1176 - 999.5) / 499 + 0.5) * 255 = 217.70 → 218
  // stored 887  → m = 750  → <= 750 → 0;  stored 888 → m = 752 → 1.28 → 1;  stored 1137 → m = 1250 → > 1249 → 255
  const pixels = new Uint16Array([1000, 1100, 887, 888, 1137, 0]);
  const dcm = writeDicom({ rows: 2, columns: 3, pixels, window: { center: 1000, width: 500 }, rescale: { intercept: -1024, slope: 2 } });
  const g = decodeDicomGrey(dcm, 'scan.dcm');
  t.is(g.width, 3);
  t.is(g.height, 2);
  t.deepEqual([...g.data], [115, 218, 0, 1, 255, 0]);
  const inv = decodeDicomGrey(writeDicom({ rows: 2, columns: 3, pixels, photometric: 'MONOCHROME1', window: { center: 1000, width: 500 }, rescale: { intercept: -1024, slope: 2 } }), 'm1.dcm');
  t.deepEqual([...inv.data], [140, 37, 255, 254, 0, 255]);
});

test('DICOM: min-max without a window; signed, 8-bit, 12-bit stored, implicit VR, LINEAR_EXACT and SIGMOID', (t) => {
  // min-max: m in {0, 1000, 2000, 4000} → 0, 63.75 → 64, 127.5 → 128, 255
  const mm = decodeDicomGrey(writeDicom({ rows: 1, columns: 4, pixels: new Uint16Array([0, 1000, 2000, 4000]) }), 'a.dcm');
  t.deepEqual([...mm.data], [0, 64, 128, 255]);
  const signed = decodeDicomGrey(writeDicom({ rows: 1, columns: 3, pixels: new Int16Array([-1000, 0, 1000]) }), 's.dcm');
  t.deepEqual([...signed.data], [0, 128, 255]);
  const eight = decodeDicomGrey(writeDicom({ rows: 1, columns: 3, pixels: new Uint8Array([10, 20, 30]) }), 'e.dcm');
  t.deepEqual([...eight.data], [0, 128, 255]);
  // 12 bits stored: the top nibble is not pixel data and is masked away.
  const twelve = decodeDicomGrey(writeDicom({ rows: 1, columns: 2, bitsStored: 12, pixels: new Uint16Array([0xf000, 0xafff]), window: { center: 2048, width: 4096 } }), 't.dcm');
  t.deepEqual([...twelve.data], [0, 255]);
  const implicit = decodeDicomGrey(writeDicom({ rows: 1, columns: 4, implicit: true, pixels: new Uint16Array([0, 1000, 2000, 4000]) }), 'i.dcm');
  t.deepEqual([...implicit.data], [0, 64, 128, 255]);
  // LINEAR_EXACT: (m - c) / w * 255 + 127.5 with c = 100, w = 200: m = 0 → 0, m = 100 → 127.5 → 128, m = 150 → 191.25 → 191
  const exact = decodeDicomGrey(writeDicom({ rows: 1, columns: 3, pixels: new Uint16Array([0, 100, 150]), window: { center: 100, width: 200 }, voiLutFunction: 'LINEAR_EXACT' }), 'x.dcm');
  t.deepEqual([...exact.data], [0, 128, 191]);
  // SIGMOID: 255 / (1 + exp(-4 (m - c) / w)); m = c → 127.5 → 128
  const sig = decodeDicomGrey(writeDicom({ rows: 1, columns: 1, pixels: new Uint16Array([100]), window: { center: 100, width: 200 }, voiLutFunction: 'SIGMOID' }), 'g.dcm');
  t.deepEqual([...sig.data], [128]);
});

test('DICOM through decodeImage: resized and replicated; unsupported files refused with the reason', async (t) => {
  const pixels = new Uint16Array(16 * 16).fill(1000);
  const dcm = writeDicom({ rows: 16, columns: 16, pixels, window: { center: 1000, width: 500 }, rescale: { intercept: -1024, slope: 2 } });
  const out = await decodeImage(dcm, 'scan.dcm', { size: 8, channels: 3 });
  t.is(out.length, 3 * 64);
  t.true(out.every((v) => v === 115));
  t.deepEqual([...(await decodeImage(dcm, 'IM0001', { size: 16, channels: 1 }))].slice(0, 3), [115, 115, 115]);
  await t.throwsAsync(decodeImage(writeDicom({ rows: 2, columns: 2, pixels: new Uint16Array(4), transferSyntax: '1.2.840.10008.1.2.4.90' }), 'j.dcm', { size: 8, channels: 1 }), {
    instanceOf: ImageDecodeError,
    message: /1\.2\.840\.10008\.1\.2\.4\.90 \(JPEG 2000 Lossless\) is not supported/,
  });
  await t.throwsAsync(decodeImage(writeDicom({ rows: 2, columns: 2, pixels: new Uint16Array(12), photometric: 'RGB' }), 'rgb.dcm', { size: 8, channels: 1 }), {
    instanceOf: ImageDecodeError,
    message: /Samples per Pixel is 3/,
  });
  const truncated = dcm.subarray(0, dcm.length - 100);
  await t.throwsAsync(decodeImage(truncated, 'cut.dcm', { size: 8, channels: 1 }), { instanceOf: ImageDecodeError, message: /cut\.dcm/ });
});
