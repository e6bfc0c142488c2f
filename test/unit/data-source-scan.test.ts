import test from 'ava';
import { scanFashion, decodeFashion } from '../../src/data/sources.ts';
import { DatasetError } from '../../src/data/index.ts';

const img = (v: number): number[] => Array.from({ length: 784 }, (_, i) => (v + i) % 256);
const json = (data: unknown): Buffer => Buffer.from(JSON.stringify({ data }));

test('scanFashion reads {"data":[[...784 ints],...]} like JSON.parse and drops empty entries', (t) => {
  const data = [img(0), [], img(100), []];
  const fast = scanFashion(json(data), 2);
  t.truthy(fast);
  t.deepEqual(Array.from(fast!), [...img(0), ...img(100)]);
  t.deepEqual(fast, decodeFashion(data, 'x.json', 2));
  t.truthy(scanFashion(Buffer.from(` { "data" : [${JSON.stringify(img(1))},${JSON.stringify(img(2))}] }\n`), 2));
});

test('scanFashion returns null (caller falls back to JSON.parse) on anything unexpected', (t) => {
  const ok = [img(0), img(1)];
  t.is(scanFashion(json(ok), 3), null, 'wrong count');
  t.is(scanFashion(json([img(0), img(1).concat([1])]), 2), null, '785 pixels');
  t.is(scanFashion(json([img(0), img(1).slice(1)]), 2), null, '783 pixels');
  t.is(scanFashion(json([img(0), [...img(1).slice(1), 256]]), 2), null, 'pixel > 255');
  t.is(scanFashion(json([img(0), [...img(1).slice(1), 1.5]]), 2), null, 'non-integer');
  t.is(scanFashion(json([img(0), [...img(1).slice(1), -1]]), 2), null, 'negative');
  t.is(scanFashion(json([[img(0)], img(1)]), 2), null, 'nested');
  t.is(scanFashion(Buffer.from(JSON.stringify({ other: ok })), 2), null, 'other key');
  t.is(scanFashion(Buffer.from(JSON.stringify({ data: ok }) + 'x'), 2), null, 'trailing garbage');
  t.is(scanFashion(json(ok).subarray(0, 3000), 2), null, 'truncated');
});

test('decodeFashion (fallback) reports malformed data with DatasetError', (t) => {
  t.throws(() => decodeFashion([img(0), [1, 2]], 'f.json', 2), { instanceOf: DatasetError, message: /entry 1 has 2 pixels/ });
  t.throws(() => decodeFashion([img(0), [...img(1).slice(1), 300]], 'f.json', 2), { instanceOf: DatasetError, message: /pixel 783/ });
  t.throws(() => decodeFashion([img(0)], 'f.json', 2), { instanceOf: DatasetError, message: /expected 2/ });
});
