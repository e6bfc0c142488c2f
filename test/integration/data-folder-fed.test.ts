/**
 * Bring your own data, end to end: nodes read image folders (real PNG files written with sharp, decoded by
 * sharp), train a 32x32 RGB model and federate over real libp2p nodes; bad folders are refused by the CLI with
 * exit code 2 and a message that says what to do.
 */
import test from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { main } from '../../src/cli/main.ts';
import { FASHION_MNIST_CLASSES, loadDataset } from '../../src/data/index.ts';
import { startMeshes, stopAll, link, waitFor, viewsConverged } from './mesh-helpers.ts';
import { createFeds, finalHashes, releaseAll, runAll } from './fed-helpers.ts';
import { tempDir } from '../temp-dirs.ts';

/** Classes that a backbone pretrained on digits tells apart after a few steps. */
const CLASSES = ['trouser', 'sneaker', 'bag', 't-shirt'];

/** Write `perClass` Fashion-MNIST train images of each of CLASSES (from offset `from`) as 32x32 RGB PNGs. */
async function writeFolder(dir: string, perClass: number, from: number, split?: 'train' | 'test'): Promise<void> {
  const ds = await loadDataset('fashion-mnist', split === 'test' ? 'test' : 'train');
  for (const name of CLASSES) {
    const c = FASHION_MNIST_CLASSES.indexOf(name);
    const sub = split ? join(dir, split, name) : join(dir, name);
    await mkdir(sub, { recursive: true });
    let k = 0;
    for (let i = 0; i < ds.n && k < from + perClass; i++) {
      if (ds.labels[i] !== c) continue;
      if (k++ < from) continue;
      const grey = Buffer.from(ds.images.subarray(i * 784, (i + 1) * 784));
      const png = await sharp(grey, { raw: { width: 28, height: 28, channels: 1 } }).resize(32, 32).toColourspace('srgb').png().toBuffer();
      await writeFile(join(sub, `img-${i}.png`), png);
    }
  }
}

test.serial('two nodes federate a 32x32 RGB backbone on their own image folders and beat chance', async (t) => {
  const root = await tempDir('fmfl-byod-');
  const dirs = [join(root, 'site-a'), join(root, 'site-b')];
  // Site a: train/ and test/ folders; site b: one folder split by --test-fraction.
  await writeFolder(dirs[0], 60, 0, 'train');
  await writeFolder(dirs[0], 20, 0, 'test');
  await writeFolder(dirs[1], 70, 60);
  const meshes = await startMeshes(2);
  t.teardown(() => stopAll(meshes));
  link(meshes, [[0, 1]]);
  await waitFor(() => viewsConverged(meshes), 'membership views');
  const feds = await createFeds(meshes, async (i) => ({
    backbone: 'vit-tiny-32-mnist', dataset: dirs[i], classes: CLASSES, imageSize: 32, channels: 3, testFraction: 0.25,
    rounds: 3, localSteps: 12, batch: 16, alpha: null, rank: 4, loraAlpha: 32, testSlice: 100, threads: 1, roundTimeoutMs: 30_000, leaderTimeoutMs: 5000,
  }));
  t.teardown(() => releaseAll(feds));
  t.is(feds[0].modelDigest, feds[1].modelDigest);
  t.deepEqual([...feds[0].classes], CLASSES);
  const metrics = await runAll(feds);
  t.is(new Set(finalHashes(feds)).size, 1, 'both nodes end on one global state');
  for (const m of metrics) {
    t.deepEqual(m.map((x) => x.version), [1, 2, 3]);
    const last = m[m.length - 1].accuracy;
    // Chance is 25% on four classes; the last exit of the federated model must clearly beat it.
    t.true(last[last.length - 1] > 0.5, `last-exit accuracy ${last.map((a) => a.toFixed(2)).join('/')}`);
  }
});

test('fmfl-node refuses a missing folder, an empty folder, an unknown class and a folder without images: exit 2', async (t) => {
  const root = await tempDir('fmfl-byod-bad-');
  const run = async (data: string, extra: string[] = []): Promise<{ code: number; err: string }> => {
    let err = '';
    const code = await main(['--data', data, '--rounds', '1', '--state-dir', join(root, 'state'), '--log-level', 'silent', ...extra], {
      stdout: () => {}, stderr: (s) => (err += s), shutdown: () => new Promise<string>(() => {}),
    });
    return { code, err };
  };
  let r = await run(join(root, 'nope'));
  t.is(r.code, 2, r.err);
  t.regex(r.err, /no such dataset, folder or CSV file/);

  await mkdir(join(root, 'empty'));
  r = await run(join(root, 'empty'));
  t.is(r.code, 2, r.err);
  t.regex(r.err, /class folder|no image/i);

  await writeFolder(join(root, 'extra'), 2, 0);
  r = await run(join(root, 'extra'), ['--classes', 'trouser,sneaker,bag']);
  t.is(r.code, 2, r.err);
  t.regex(r.err, /t-shirt/);
  t.regex(r.err, /img-\d+\.png/, 'names files of the unknown class');

  await mkdir(join(root, 'text', 'a'), { recursive: true });
  await writeFile(join(root, 'text', 'a', 'notes.txt'), 'not an image');
  r = await run(join(root, 'text'));
  t.is(r.code, 2, r.err);
  t.regex(r.err, /no image files .*notes\.txt/);

  r = await run('fashion-mnist', ['--classes', 'a,a']);
  t.is(r.code, 2, r.err);
  t.regex(r.err, /twice/);
});
