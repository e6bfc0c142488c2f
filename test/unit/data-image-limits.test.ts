import test from 'ava';
import { readFileSync } from 'node:fs';
import * as data from '../../src/data/index.ts';
import { MAX_IMAGE_CACHE_META_BYTES } from '../../src/data/image-cache.ts';

const limits = readFileSync(new URL('../../protocols/LIMITS.md', import.meta.url), 'utf8');

test('every image-data limit appears in protocols/LIMITS.md with its value', (t) => {
  const constants: Record<string, number> = {
    MAX_IMAGE_FILE_BYTES: data.MAX_IMAGE_FILE_BYTES,
    MAX_INPUT_PIXELS: data.MAX_INPUT_PIXELS,
    DEFAULT_MAX_IMAGES: data.DEFAULT_MAX_IMAGES,
    MAX_IMAGES_LIMIT: data.MAX_IMAGES_LIMIT,
    MAX_IMAGE_SET_BYTES: data.MAX_IMAGE_SET_BYTES,
    MAX_IMAGE_CLASSES: data.MAX_IMAGE_CLASSES,
    MAX_CLASS_NAME_CHARS: data.MAX_CLASS_NAME_CHARS,
    MAX_FOLDER_DEPTH: data.MAX_FOLDER_DEPTH,
    MAX_CSV_BYTES: data.MAX_CSV_BYTES,
    MAX_CSV_PATH_CHARS: data.MAX_CSV_PATH_CHARS,
    MAX_SKIPPED_EXAMPLES: data.MAX_SKIPPED_EXAMPLES,
    MAX_DECODE_CONCURRENCY: data.MAX_DECODE_CONCURRENCY,
    MAX_IMAGE_CACHE_META_BYTES,
  };
  for (const [name, value] of Object.entries(constants)) {
    t.true(Number.isFinite(value), name);
    t.regex(limits, new RegExp(`\\| \`${name}\` \\| ${value}\\b`), name);
  }
  t.regex(limits, new RegExp(`\\| \`MIN_INPUT_SIZE\` / \`MAX_INPUT_SIZE\` \\| ${data.MIN_INPUT_SIZE} / ${data.MAX_INPUT_SIZE} \\|`));
  t.regex(limits, new RegExp(`\\| \`IMAGE_EXTENSIONS\` \\| ${data.IMAGE_EXTENSIONS.join(' ')} \\|`));
});
