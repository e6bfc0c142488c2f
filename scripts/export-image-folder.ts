/**
 * Export a bundled dataset as an image folder (`<out>/train/<class>/<i>.png`, `<out>/test/<class>/<i>.png`,
 * `<out>/classes.txt`), e.g. to federate Fashion-MNIST through the image-folder source:
 *   npm run export:images -- --dataset fashion-mnist --out out/fmnist [--size 32 --channels 3] [--limit-per-class 500]
 * Class folders: fashion-mnist 0-t-shirt, 1-trouser, ..., 9-ankle-boot; mnist 0..9 (they sort in label order).
 * Prints one JSON object with what was written.
 */
import { Command } from 'commander';
import { DATASET_NAMES, type DatasetName, type Split } from '../src/data/index.ts';
import { exportImageFolder } from './lib/export-images.ts';

const program = new Command()
  .requiredOption('--out <dir>', 'output folder')
  .option('--dataset <name>', `bundled dataset: ${DATASET_NAMES.join(' | ')}`, 'fashion-mnist')
  .option('--size <n>', 'image side in pixels (28 = the source pixels; others resized with sharp, Lanczos-3)', '28')
  .option('--channels <n>', '1 (greyscale) or 3 (grey replicated to RGB)', '1')
  .option('--limit-per-class <n>', 'at most this many images per class and split')
  .option('--format <f>', 'png | jpg', 'png')
  .option('--splits <list>', 'comma-separated splits to write', 'train,test')
  .parse(process.argv);
const o = program.opts<{ out: string; dataset: string; size: string; channels: string; limitPerClass?: string; format: string; splits: string }>();

async function main(): Promise<number> {
  if (!DATASET_NAMES.includes(o.dataset as DatasetName)) {
    console.error(`--dataset must be one of ${DATASET_NAMES.join(', ')}`);
    return 2;
  }
  if (o.format !== 'png' && o.format !== 'jpg') {
    console.error('--format must be png or jpg');
    return 2;
  }
  const splits = o.splits.split(',').map((s) => s.trim());
  if (splits.length === 0 || !splits.every((s) => s === 'train' || s === 'test')) {
    console.error('--splits must list train and/or test');
    return 2;
  }
  try {
    let last = 0;
    const r = await exportImageFolder({
      dataset: o.dataset as DatasetName,
      out: o.out,
      size: Number(o.size),
      channels: Number(o.channels) as 1 | 3,
      limitPerClass: o.limitPerClass === undefined ? undefined : Number(o.limitPerClass),
      format: o.format,
      splits: splits as Split[],
      onProgress: (done, total) => {
        if (process.stderr.isTTY && (done - last >= 1000 || done === total)) {
          last = done;
          process.stderr.write(`\rexported ${done}/${total}`);
          if (done === total) process.stderr.write('\n');
        }
      },
    });
    console.log(JSON.stringify({ ...r, dataset: o.dataset, size: Number(o.size), channels: Number(o.channels), format: o.format, ms: Math.round(r.ms) }));
    return 0;
  } catch (err) {
    console.error(`export failed: ${(err as Error).message}`);
    return 2;
  }
}

process.exitCode = await main();
