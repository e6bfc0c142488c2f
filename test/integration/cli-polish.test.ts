/** The CLI's own surface: --version, help <command>, grouped --help, unknown commands, swarm-key --force, Ctrl-C via npx. */
import test from 'ava';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../../src/cli/main.ts';
import { tempDir } from '../temp-dirs.ts';
import { waitFor } from './mesh-helpers.ts';

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (s) => void (out += s), stderr: (s) => void (err += s), shutdown: async () => 'test' });
  return { code, out, err };
}

test('--version, help <command>, grouped --help with examples, unknown commands refused', async (t) => {
  const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { version: string };
  t.like(await run(['--version']), { code: 0, out: `${pkg.version}\n` });
  const help = await run(['--help']);
  t.is(help.code, 0);
  for (const heading of ['Mesh:', 'Dashboard, status and serving:', 'Logging:', 'Federated training', 'Commands:', 'Examples:']) t.true(help.out.includes(`\n${heading}`), heading);
  t.regex(help.out, /^ {2}status \[options\]/m);
  const infer = await run(['help', 'infer']);
  t.is(infer.code, 0);
  t.regex(infer.out, /^Usage: fmfl-node infer/);
  t.regex((await run(['help', 'status'])).out, /--http <url>/);
  const bogus = await run(['bogus']);
  t.is(bogus.code, 2);
  t.regex(bogus.err, /unknown command "bogus"; commands: infer, import-model, status, id, swarm-key, help/);
});

test('swarm-key refuses to replace an existing key unless --force', async (t) => {
  const dir = await tempDir('fmfl-key-');
  const file = join(dir, 'swarm.key');
  t.is((await run(['swarm-key', file])).code, 0);
  const first = await readFile(file, 'utf8');
  const again = await run(['swarm-key', file]);
  t.is(again.code, 2);
  t.regex(again.err, /exists; pass --force/);
  t.is(await readFile(file, 'utf8'), first, 'the key is untouched');
  t.is((await run(['swarm-key', file, '--force'])).code, 0);
  t.not(await readFile(file, 'utf8'), first);
});

test.serial('Ctrl-C on `npx fmfl-node` (SIGINT to the whole process group, as a terminal sends it) exits 0', async (t) => {
  const dir = await tempDir('fmfl-ctrlc-');
  const child = spawn('npx', ['fmfl-node', '--state-dir', dir, '--federation', 'ctrlc', '--log-level', 'warn'], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => void (out += d.toString()));
  child.stderr!.on('data', () => {});
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await waitFor(() => /^listening /m.test(out), 'the node listens', 60_000);
  process.kill(-child.pid!, 'SIGINT');
  t.is(await exited, 0);
  t.regex(out, /shutting down \(SIGINT\)/);
});

test.serial('a federating node says what it waits for, with the likely cause of a failed dial, and sums up when stopped', async (t) => {
  const { tinyFl } = await import('./fed-helpers.ts');
  const { writeFile } = await import('node:fs/promises');
  const { createMesh } = await import('../../src/mesh/index.ts');
  const dir = await tempDir('fmfl-wait-');
  const profile = join(dir, 'p.json');
  await writeFile(profile, JSON.stringify({ fl: await tinyFl(0, 2, { rounds: 3 }) }));
  const ghost = (await createMesh({ federation: 'x' })).peerId.toString();
  let out = '';
  let stop!: (why: string) => void;
  const stopped = new Promise<string>((r) => (stop = r));
  const run = main(['--config', profile, '--state-dir', join(dir, 's'), '--federation', 'wait', '--log-level', 'silent', '--no-progress', '--peers', `/ip4/127.0.0.1/tcp/1/p2p/${ghost}`], {
    stdout: (s) => void (out += s), stderr: () => {}, shutdown: () => stopped,
  });
  await waitFor(() => /\(unreachable: nothing listens/.test(out), 'the waiting line names the cause', 60_000);
  t.regex(out, new RegExp(`^waiting for members 1/2 \\(dialing /ip4/127\\.0\\.0\\.1/tcp/1/p2p/${ghost} \\(unreachable: nothing listens at that address`, 'm'));
  const lines = (): number => (out.match(/^waiting for members/gm) ?? []).length;
  const before = lines();
  t.true(before <= 2, 'one line when waiting starts and one when the cause is known, at most');
  await new Promise((r) => setTimeout(r, 2500)); // redials at 0.5 s, 1 s, 2 s: same cause, no new line
  t.is(lines(), before, 'no line per retry');
  stop('test');
  t.is(await run, 0);
  t.regex(out, /^stopped \(test\) at round 0 of 3 \(0 run here\) in [\d.]+ s; no round completed; checkpoint .*federation\.fmfl$/m);
});

test.serial('--no-measure-capabilities (schema-generated, profile key measureCapabilities) skips the start-up measurement', async (t) => {
  const dir = await tempDir('fmfl-measure-');
  const caps = async (extra: string[]): Promise<{ trainThroughput: number; features: string[] }> => {
    let out = '';
    let stop!: (why: string) => void;
    const stopped = new Promise<string>((r) => (stop = r));
    const run = main(['--state-dir', join(dir, extra.join('') || 'measured'), '--federation', 'measure', '--log-level', 'silent', '--http-port', '0', ...extra], {
      stdout: (s) => void (out += s), stderr: () => {}, shutdown: () => stopped,
    });
    await waitFor(() => /^dashboard (\S+)/m.test(out), 'the node serves its dashboard', 60_000);
    const url = /^dashboard (\S+)/m.exec(out)![1];
    const doc = (await (await fetch(`${url}status`)).json()) as { members: Array<{ self: boolean; capabilities: { trainThroughput: number; features: string[] } }> };
    stop('test');
    t.is(await run, 0);
    return doc.members.find((m) => m.self)!.capabilities;
  };
  const measured = await caps([]);
  t.true(measured.trainThroughput > 0, 'measured by default');
  t.true(measured.features.some((f) => f.startsWith('infer-lat1:')));
  const declared = await caps(['--no-measure-capabilities']);
  t.is(declared.trainThroughput, 0, 'not measured');
  t.false(declared.features.some((f) => f.startsWith('infer-lat')));
  const help = await run(['--help']);
  t.regex(help.out, /--no-measure-capabilities +turn off: measure the execution provider/);
});
