import test from 'ava';
import { readFile } from 'node:fs/promises';
import * as C from '../../src/mesh/constants.ts';
import { RefusalReason } from '../../src/mesh/errors.ts';

const doc = await readFile('protocols/LIMITS.md', 'utf8');

test('every numeric mesh constant is listed with its value in protocols/LIMITS.md', (t) => {
  for (const [name, value] of Object.entries(C)) {
    if (typeof value !== 'number') continue;
    const row = doc.split('\n').find((l) => l.includes(`\`${name}\``));
    t.truthy(row, `${name} missing from LIMITS.md`);
    t.true(row!.replace(/[ ,_]/g, '').includes(String(value)), `${name}: LIMITS.md must show ${value}`);
  }
});

test('every refusal reason is documented in protocols/sync.md with its number', async (t) => {
  const sync = await readFile('protocols/sync.md', 'utf8');
  for (const [name, value] of Object.entries(RefusalReason)) {
    if (typeof value !== 'number') continue;
    t.regex(sync, new RegExp(`\\|\\s*${value}\\s*\\|\\s*\`${name}\``), `${name} = ${value}`);
  }
});

test('topic and protocol ids follow /fmfl/<federation>/...', (t) => {
  t.is(C.topicId('fed', 'membership'), '/fmfl/fed/membership/1');
  t.is(C.protocolId('fed', 'sync'), '/fmfl/fed/sync/1.0.0');
  t.true(C.MAX_ENVELOPE_BYTES > C.STREAM_CUTOVER_BYTES);
  t.true(C.MAX_GOSSIP_RPC_BYTES > C.MAX_ENVELOPE_BYTES);
});
