import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeInputImage, normalizeImages, parseInputBytes, parseJsonImages } from '../../src/infer/input.ts';
import { InferError } from '../../src/infer/errors.ts';
import { datasetOf, toFloatBatch } from '../../src/data/index.ts';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'infer');
const read = async (f: string): Promise<Uint8Array> => new Uint8Array(await readFile(join(FIX, f)));

test('PNGs written by ImageMagick (grey, RGB, RGBA; filters 1-4) decode to the Fashion-MNIST pixels', async (t) => {
  const want = Array.from(await read('fmnist-test-3017.gray'));
  for (const f of ['fmnist-gray.png', 'fmnist-rgb.png', 'fmnist-rgba.png']) {
    const got = Array.from(await decodeInputImage(await read(f)));
    // RGB -> luminance of equal channels rounds back to the same byte; alpha is opaque here.
    t.deepEqual(got, want, f);
  }
  t.deepEqual(Array.from((await parseInputBytes(await read('fmnist-gray.png')))[0]), want);
  // The same file as the 3-channel input of a 32x32 RGB model: three equal planes of 32x32.
  const rgb = await decodeInputImage(await read('fmnist-gray.png'), { size: 32, channels: 3 });
  t.is(rgb.length, 3 * 32 * 32);
  t.deepEqual(Array.from(rgb.subarray(0, 1024)), Array.from(rgb.subarray(1024, 2048)));
});

test('other sizes, palettes and interlacing are decoded and resized; broken files are refused with a clear reason', async (t) => {
  for (const f of ['gray-32.png', 'palette.png', 'interlaced.png']) t.is((await decodeInputImage(await read(f))).length, 784, f);
  await t.throwsAsync(decodeInputImage(new Uint8Array(0)), { instanceOf: InferError });
  const good = await read('fmnist-gray.png');
  await t.throwsAsync(decodeInputImage(Uint8Array.from([...good.subarray(0, 16), ...new Uint8Array(64).fill(0x5a)])), { instanceOf: InferError });
  await t.throwsAsync(decodeInputImage(new Uint8Array(17 * 1024 * 1024)), { instanceOf: InferError, message: /over the .*-byte limit/ });
});

test('JSON inputs: one image, a list, {images}; bad shapes and values are refused', async (t) => {
  const img = Array.from({ length: 784 }, (_, i) => i % 256);
  t.is(parseJsonImages({ pixels: img }).length, 1);
  t.is(parseJsonImages([{ pixels: img }, { pixels: img }]).length, 2);
  t.is(parseJsonImages({ images: [img, img, img] }).length, 3);
  t.is(parseJsonImages({ pixels: img })[0][300], 300 % 256);
  t.throws(() => parseJsonImages({ pixels: img.slice(1) }), { instanceOf: InferError, message: /783 pixels/ });
  t.throws(() => parseJsonImages({ pixels: [...img.slice(1), 256] }), { instanceOf: InferError, message: /pixel 783/ });
  t.throws(() => parseJsonImages({ pixels: [...img.slice(1), 'x'] }), { instanceOf: InferError });
  t.throws(() => parseJsonImages({ foo: 1 }), { instanceOf: InferError, message: /JSON input must be/ });
  t.throws(() => parseJsonImages([]), { instanceOf: InferError, message: /no image/ });
  await t.throwsAsync(parseInputBytes(new TextEncoder().encode('{not json')), { instanceOf: InferError, message: /neither an image file .* nor valid JSON/ });
  t.is(parseJsonImages({ pixels: Array(3 * 32 * 32).fill(7) }, { size: 32, channels: 3 })[0].length, 3072);
  t.throws(() => parseJsonImages({ pixels: img }, { size: 32, channels: 3 }), { instanceOf: InferError, message: /3072/ });
});

test('normalization matches the training batches (toFloatBatch)', (t) => {
  const img = Uint8Array.from({ length: 784 }, (_, i) => (i * 7) % 256);
  const ds = datasetOf({ name: 'one', split: 'test', images: img, labels: new Uint8Array(1), classNames: ['a'], size: 28, channels: 1 });
  t.deepEqual(Array.from(normalizeImages([img])), Array.from(toFloatBatch(ds, [0])));
  // Per-channel normalisation of a 3-channel input equals the training batch's with the same spec.
  const rgb = Uint8Array.from({ length: 3 * 16 }, (_, i) => (i * 13) % 256);
  const spec = { size: 4, channels: 3 as const, mean: [0.1, 0.2, 0.3], std: [0.5, 0.25, 0.2] };
  const ds3 = datasetOf({ name: 'rgb', split: 'test', images: rgb, labels: new Uint8Array(1), classNames: ['a'], size: 4, channels: 3 });
  t.deepEqual(Array.from(normalizeImages([rgb], spec)), Array.from(toFloatBatch(ds3, [0], undefined, spec)));
  t.is(normalizeImages([rgb], spec)[16], (rgb[16] / 255 - 0.2) / 0.25 === 0 ? 0 : Math.fround((rgb[16] / 255 - 0.2) / 0.25));
});
