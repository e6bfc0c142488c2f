import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodePng, normalizeImages, parseInputBytes, parseJsonImages, pngToGrey } from '../../src/infer/input.ts';
import { InferError } from '../../src/infer/errors.ts';
import { datasetOf, toFloatBatch } from '../../src/data/index.ts';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'infer');
const read = async (f: string): Promise<Uint8Array> => new Uint8Array(await readFile(join(FIX, f)));

test('PNGs written by ImageMagick (grey, RGB, RGBA; filters 1-4) decode to the Fashion-MNIST pixels', async (t) => {
  const want = Array.from(await read('fmnist-test-3017.gray'));
  for (const f of ['fmnist-gray.png', 'fmnist-rgb.png', 'fmnist-rgba.png']) {
    const got = Array.from(pngToGrey(await read(f)));
    // RGB -> luma of equal channels rounds back to the same byte.
    t.deepEqual(got, want, f);
  }
  const rgb = decodePng(await read('fmnist-rgb.png'));
  t.deepEqual([rgb.width, rgb.height, rgb.channels], [28, 28, 3]);
  t.deepEqual(Array.from(parseInputBytes(await read('fmnist-gray.png'))[0]), want);
});

test('unsupported or broken PNGs are refused with a clear reason', async (t) => {
  t.throws(() => pngToGrey(new Uint8Array(0)), { instanceOf: InferError, message: /not a PNG/ });
  await t.throwsAsync(async () => pngToGrey(await read('gray-32.png')), { instanceOf: InferError, message: /32x32.*28x28/ });
  await t.throwsAsync(async () => pngToGrey(await read('palette.png')), { instanceOf: InferError, message: /palette/ });
  await t.throwsAsync(async () => pngToGrey(await read('interlaced.png')), { instanceOf: InferError, message: /interlaced/ });
  const good = await read('fmnist-gray.png');
  t.throws(() => pngToGrey(good.subarray(0, good.length - 20)), { instanceOf: InferError });
  const corrupt = Uint8Array.from(good);
  corrupt[60] ^= 0xff;
  t.throws(() => pngToGrey(corrupt), { instanceOf: InferError, message: /CRC/ });
});

test('JSON inputs: one image, a list, {images}; bad shapes and values are refused', (t) => {
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
  t.throws(() => parseInputBytes(new TextEncoder().encode('{not json')), { instanceOf: InferError, message: /neither a PNG nor valid JSON/ });
});

test('normalization matches the training batches (toFloatBatch)', (t) => {
  const img = Uint8Array.from({ length: 784 }, (_, i) => (i * 7) % 256);
  const ds = datasetOf({ name: 'one', split: 'test', images: img, labels: new Uint8Array(1), classNames: ['a'], size: 28, channels: 1 });
  t.deepEqual(Array.from(normalizeImages([img])), Array.from(toFloatBatch(ds, [0])));
});
