/**
 * `--device auto` tries the CUDA provider once per process: later sessions go straight to the CPU when it did not
 * load, so onnxruntime prints its provider error at most once (it printed one block per session before). Run in a
 * child process: onnxruntime writes that error to file descriptor 2, and the try-once state is per process.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';

const CHILD = `
import { readFileSync } from 'node:fs';
import { Session } from './src/runtime/session.ts';
const model = new Uint8Array(readFileSync('test/fixtures/onnx/resnet.onnx'));
const providers = [];
for (let i = 0; i < 3; i++) {
  const s = await Session.create(model, { provider: 'auto', threads: 1 });
  providers.push(s.provider);
  await s.release();
}
console.log(JSON.stringify(providers));
`;

test('device auto probes CUDA once per process; every session gets the same provider', (t) => {
  const r = spawnSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', CHILD], { encoding: 'utf8', timeout: 100_000 });
  t.is(r.status, 0, r.stderr);
  const providers = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as string[];
  t.is(providers.length, 3);
  t.true(providers.every((p) => p === providers[0]), `one provider for all: ${providers.join(', ')}`);
  const blocks = (r.stderr.match(/E:onnxruntime/g) ?? []).length;
  t.true(blocks <= 1, `onnxruntime's provider error at most once (${blocks})`);
  if (providers[0] === 'cpu') t.regex(r.stderr, /CUDA execution provider unavailable, using CPU/);
});
