import test from 'ava';
import { readFile } from 'node:fs/promises';
import { DEFAULT_DECODE_LIMITS } from '../../src/update/index.ts';
import { DEFAULT_SECAGG_LIMITS } from '../../src/privacy/index.ts';

test('every update decode limit is listed with its value in protocols/LIMITS.md', async (t) => {
  const doc = await readFile('protocols/LIMITS.md', 'utf8');
  for (const [name, value] of Object.entries(DEFAULT_DECODE_LIMITS)) {
    const row = doc.split('\n').find((l) => l.includes(`\`${name}\``) && l.startsWith('|'));
    t.truthy(row, `${name} missing from LIMITS.md`);
    t.true(row!.replace(/[ ,_]/g, '').includes(String(value)), `${name}: LIMITS.md must show ${value}`);
    t.true(Number.isFinite(value) && value > 0, `${name} must be finite`);
  }
  for (const value of Object.values(DEFAULT_SECAGG_LIMITS)) t.true(doc.includes(String(value)), `secagg limit ${value} missing`);
});
