/**
 * Temporary folders for tests, removed when the test file's run ends (an `after.always` hook registered when a
 * test file imports this module), so `npm test` leaves nothing behind in the system temp folder.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dirs: string[] = [];
test.after.always('remove temporary folders', async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** A fresh folder under the system temp folder whose name starts with `prefix`. */
export async function tempDir(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}
