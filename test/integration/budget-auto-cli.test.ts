/**
 * `--budget auto` end to end through the CLI: a real fmfl-node measures itself at start (real ORT training steps and
 * forwards on the reference backbone), picks depth and rank from --round-seconds, says so, and trains exactly that
 * budget in a one-node federation on Fashion-MNIST. Asserts on the chosen depth and rank, never on time.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../../src/cli/main.ts';
import { tempDir } from '../temp-dirs.ts';

async function runNode(dir: string, extra: string[]): Promise<{ code: number; out: string; err: string; accuracy: number[][] }> {
  let out = '';
  let err = '';
  const metrics = join(dir, 'metrics.jsonl');
  const code = await main([
    '--shard', '0/1', '--rounds', '1', '--local-steps', '2', '--batch', '16', '--test-slice', '50', '--threads', '1', '--aggregator', 'hetlora-zero',
    '--state-dir', join(dir, 'state'), '--listen', '/ip4/127.0.0.1/tcp/0', '--log-level', 'silent', '--metrics', metrics, '--no-progress', ...extra,
  ], { stdout: (s) => (out += s), stderr: (s) => (err += s), shutdown: () => new Promise<string>(() => {}) });
  // The metrics lines are appended without awaiting: wait (bounded) for the round's line.
  let accuracy: number[][] = [];
  for (let i = 0; code === 0 && i < 100 && accuracy.length === 0; i++) {
    const text = await readFile(metrics, 'utf8').catch(() => '');
    const lines = text.split('\n').filter((l) => l.endsWith('}')).map((l) => JSON.parse(l) as { accuracy?: number[]; final?: boolean });
    accuracy = lines.filter((l) => !l.final && l.accuracy).map((l) => l.accuracy!);
    if (accuracy.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  return { code, out, err, accuracy };
}

test.serial('--budget auto: a tiny time budget trains a shallower, narrower budget than a large one', async (t) => {
  const tinyDir = await tempDir('fmfl-budget-tiny-');
  const tiny = await runNode(tinyDir, ['--budget', 'auto', '--round-seconds', '0.0001']);
  t.is(tiny.code, 0, tiny.err);
  t.regex(tiny.out, /budget auto: depth 1 of 4, rank 1: \S+ s per step at depth 1, 2 steps = \S+ s > 0\.0001 s: nothing fits/);
  t.regex(tiny.out, /round 1 /);
  t.true(tiny.accuracy.length >= 1);
  t.is(tiny.accuracy[0].length, 1, 'the tiny budget trains and reports exit 1 only');

  // A restart on the same --state-dir resumes at the stored pick, whatever the new target would pick.
  const resumed = await runNode(tinyDir, ['--budget', 'auto', '--round-seconds', '86400', '--rounds', '2']);
  t.is(resumed.code, 0, resumed.err);
  t.regex(resumed.out, /budget auto: resuming at depth 1, rank 1 \(the pick stored in /);
  t.regex(resumed.out, /round 2 /);
  t.is(resumed.accuracy.at(-1)!.length, 1, 'round 2 still trains exit 1 only');
  // Without budget auto, another rank on that checkpoint is a clear error naming the flag, not an optimizer mismatch.
  const other = await runNode(tinyDir, ['--rounds', '3']);
  t.not(other.code, 0);
  t.regex(other.err, /was written at --rank 1, not 8; start with --rank 1 or a fresh --state-dir/);

  const large = await runNode(await tempDir('fmfl-budget-large-'), ['--budget', 'auto', '--round-seconds', '86400']);
  t.is(large.code, 0, large.err);
  t.regex(large.out, /budget auto: depth 4 of 4, rank 8: \S+ s per step at depth 4, 2 steps = \S+ s ≤ 86400 s/);
  t.is(large.accuracy[0].length, 4, 'the large budget trains all four exits');

  // The bounds hold: --max-depth and --rank cap what a large budget may pick.
  const capped = await runNode(await tempDir('fmfl-budget-capped-'), ['--budget', 'auto', '--round-seconds', '86400', '--max-depth', '3', '--rank', '4', '--global-rank', '8']);
  t.is(capped.code, 0, capped.err);
  t.regex(capped.out, /budget auto: depth 3 of 4, rank 4:/);
  t.is(capped.accuracy[0].length, 3);
});

test('--budget auto without --round-seconds is refused before the node starts: exit 2', async (t) => {
  const r = await runNode(await tempDir('fmfl-budget-bad-'), ['--budget', 'auto']);
  t.is(r.code, 2, r.err);
  t.regex(r.err, /--budget auto needs --round-seconds/);
});
