import test from 'ava';
import { writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { Command } from 'commander';
import { registerInferCommand } from '../../src/infer/cli.ts';
import { openModel } from '../../src/infer/load.ts';
import { InferService } from '../../src/infer/service.ts';
import { makeTestCheckpoint, fixtureImage } from './infer-helpers.ts';
import { startMeshes, stopAll } from './mesh-helpers.ts';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'infer');

/** Run `infer <args>` through commander like fmfl-node does; returns the code and the output. */
async function infer(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let code = 0;
  let out = '';
  let err = '';
  const io = { stdout: (s: string) => void (out += s), stderr: (s: string) => void (err += s) };
  const p = new Command('fmfl-node').exitOverride().configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  registerInferCommand(p, io, (c) => (code = c));
  try {
    await p.parseAsync(['infer', ...args], { from: 'user' });
  } catch (e) {
    return { code: 2, out, err: err + String((e as Error).message) };
  }
  return { code, out, err };
}

let ckpt: string;
let json: string;
test.before(async () => {
  ckpt = await makeTestCheckpoint('cli-v1');
  json = join(dirname(ckpt), 'in.json');
  const img = Array.from(await fixtureImage());
  await writeFile(json, JSON.stringify([{ pixels: img }, { pixels: img.map((v) => 255 - v) }]));
});

test('infer: JSON and PNG inputs, --exit, --mode, --json output', async (t) => {
  const a = await infer(['--checkpoint', ckpt, '--input', json, '--exit', '2', '--json']);
  t.is(a.code, 0, a.err);
  const r = JSON.parse(a.out) as { modelVersion: string; predictions: { label: number; probs: number[]; exit: number }[] };
  t.is(r.modelVersion, 'cli-v1');
  t.is(r.predictions.length, 2);
  t.true(r.predictions.every((p) => p.exit === 2 && p.probs.length === 10));
  const b = await infer(['--checkpoint', ckpt, '--input', join(FIX, 'fmnist-gray.png'), '--mode', 'ensemble']);
  t.is(b.code, 0, b.err);
  t.regex(b.out, /^image 0: \S+ {2}p=0\.\d{3} {2}exit 4\/4 {2}ensemble/m);
  const c = await infer(['--checkpoint', ckpt, '--input', join(FIX, 'fmnist-rgb.png'), '--exit', 'auto', '--budget-ms', '10000', '--json']);
  t.is(JSON.parse(c.out).predictions[0].exit, 4, 'a generous budget plans the deepest exit');
});

test('infer: usage errors are refused with a reason', async (t) => {
  const refused = async (args: string[], why: RegExp): Promise<void> => {
    const r = await infer(['--checkpoint', ckpt, ...args]);
    t.not(r.code, 0);
    t.regex(r.err, why);
  };
  await refused(['--input', json, '--exit', '2', '--budget-ms', '5'], /either --exit k or --budget-ms/);
  await refused(['--input', json, '--exit', 'auto'], /--exit auto needs --budget-ms/);
  await refused(['--input', json, '--exit', '7'], /--exit must be in 1\.\.4/);
  await refused(['--input', json, '--mode', 'magic'], /mode/);
  await refused(['--input', json, '--peers-k', '99'], /--peers-k must be a whole number in 0\.\.16/);
  await refused(['--input', join(FIX, 'fmnist-test-3017.gray')], /neither an image file/);
  await refused(['--input', join(FIX, 'nope.json')], /cannot read --input/);
  const notCkpt = await infer(['--checkpoint', join(FIX, 'fmnist-gray.png'), '--input', json]);
  t.regex(notCkpt.err, /not an fmfl checkpoint/);
  const missing = await infer(['--checkpoint', ckpt]);
  t.is(missing.code, 2);
  t.regex(missing.err, /--input/);
});

test('infer --peers-k: asks a real peer over the mesh and combines its answer with the local one', async (t) => {
  const [peer] = await startMeshes(1);
  const model = await openModel(ckpt, { maxExits: 2, threads: 1, calibrate: false });
  const svc = new InferService({ mesh: peer, model });
  await svc.start();
  try {
    const r = await infer(['--checkpoint', ckpt, '--input', json, '--peers-k', '1', '--federation', 'test', '--peers', peer.multiaddrs()[0], '--deadline-ms', '5000', '--json']);
    t.is(r.code, 0, r.err);
    const o = JSON.parse(r.out) as { answers: { peer: string; exit: number; modelVersion: string }[]; ignored: unknown[]; predictions: { probs: number[] }[]; local: { exit: number } };
    t.is(o.answers.length, 1, JSON.stringify(o.ignored));
    t.is(o.answers[0].peer, peer.peerId.toString());
    t.true(o.answers[0].exit >= 1 && o.answers[0].exit <= 2);
    t.is(o.answers[0].modelVersion, 'cli-v1');
    t.is(o.local.exit, 4);
    t.is(o.predictions.length, 2);
  } finally {
    await svc.stop();
    await stopAll([peer]);
    await model.release();
  }
});

test('fmfl-node infer and a node serving POST /predict through main()', async (t) => {
  const { main } = await import('../../src/cli/main.ts');
  let out = '';
  let err = '';
  const code = await main(['infer', '--checkpoint', ckpt, '--input', json, '--exit', '1', '--json'], { stdout: (s) => void (out += s), stderr: (s) => void (err += s) });
  t.is(code, 0, err);
  t.true((JSON.parse(out) as { predictions: { exit: number }[] }).predictions.every((p) => p.exit === 1));
  // Any size is resized to the model's input (sharp); raw bytes that are no image nor JSON are refused.
  t.is(await main(['infer', '--checkpoint', ckpt, '--input', join(FIX, 'gray-32.png')], { stdout: () => {}, stderr: (s) => void (err += s) }), 0, err);
  t.is(await main(['infer', '--checkpoint', ckpt, '--input', join(FIX, 'fmnist-test-3017.gray')], { stdout: () => {}, stderr: (s) => void (err += s) }), 1);
  t.regex(err, /neither an image file/);
  t.is(await main(['--http-host', '127.0.0.1'], { stdout: () => {}, stderr: (s) => void (err += s) }), 2);
  t.regex(err, /--http-host needs --http-port/);

  let release!: (why: string) => void;
  const stop = new Promise<string>((r) => (release = r));
  let nodeOut = '';
  let sawUrl!: (u: string) => void;
  const url = new Promise<string>((r) => (sawUrl = r));
  const run = main(['--checkpoint', ckpt, '--http-port', '0', '--federation', 'cli-infer', '--state-dir', join(dirname(ckpt), 'state')], {
    stdout: (s) => {
      nodeOut += s;
      const m = /predict (http:\/\/127\.0\.0\.1:\d+\/predict)/.exec(nodeOut);
      if (m) sawUrl(m[1]);
    },
    stderr: () => {},
    shutdown: () => stop,
  });
  const u = await Promise.race([url, run.then((c) => `exited ${c}: ${nodeOut}`)]);
  t.regex(u, /^http:/);
  const res = await fetch(u, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pixels: Array.from(await fixtureImage()) }) });
  t.is(res.status, 200);
  t.is(((await res.json()) as { modelVersion: string }).modelVersion, 'cli-v1');
  release('test done');
  t.is(await run, 0);
});
