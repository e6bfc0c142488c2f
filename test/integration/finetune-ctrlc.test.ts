/**
 * Ctrl-C in `npm run finetune`: the run stops, the last completed epoch is saved as a model checkpoint that loads, and
 * the script exits 0 saying where it saved.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelCheckpoint } from '../../src/model/model-checkpoint.ts';
import { waitFor } from './mesh-helpers.ts';

test('SIGINT after epoch 1 saves the last completed epoch and exits 0', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fmfl-ft-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const save = join(dir, 'model.fmfl');
  // Many short epochs: the run is far from done when the signal comes.
  const child = spawn(process.execPath, ['--import=tsx', 'scripts/finetune.ts', '--data', 'mnist', '--limit', '128', '--batch', '32', '--epochs', '1000', '--threads', '1', '--save', save], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  let out = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  t.teardown(() => void child.kill('SIGKILL'));
  await waitFor(() => /^epoch 1: /m.test(err), 'epoch 1 completed', 110_000);
  child.kill('SIGINT');
  t.is(await exited, 0, err);
  const m = /stopped \(SIGINT\) after epoch (\d+) of 1000: saved model checkpoint (\S+) \(the last completed epoch\)/.exec(err);
  t.truthy(m, err);
  t.is(m![2], save);
  t.true(existsSync(save));
  const ck = await loadModelCheckpoint(save);
  t.is(ck.info?.completedEpochs, Number(m![1]));
  t.true(Number(m![1]) >= 1);
  t.true(ck.weights.size > 0);
  const summary = JSON.parse(out) as { stoppedBy: string; completedEpochs: number };
  t.like(summary, { stoppedBy: 'SIGINT', completedEpochs: Number(m![1]) });
});
