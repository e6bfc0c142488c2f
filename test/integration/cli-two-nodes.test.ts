import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './mesh-helpers.ts';
import { main } from '../../src/cli/main.ts';

const BIN = 'src/cli/fmfl-node.mjs';

interface Proc {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
}

function startBin(args: string[]): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  // 'close' fires after stdout is drained ('exit' may come first).
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exited };
}

async function tmp(t: import('ava').ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fmfl-cli-'));
  t.teardown(async () => rm(dir, { recursive: true, force: true }));
  return dir;
}

test.serial('two fmfl-node processes see each other join and leave; SIGINT/SIGTERM exit 0', async (t) => {
  const dir = await tmp(t);
  const fast = ['--heartbeat-ms', '200', '--expiry-ms', '2000', '--federation', 'cli'];
  const a = startBin(['--state-dir', join(dir, 'a'), ...fast]);
  t.teardown(() => void a.child.kill('SIGKILL'));
  await waitFor(() => /listening \S+/.test(a.out()), 'a prints its multiaddr');
  const addrA = /listening (\S+)/.exec(a.out())![1];
  const idA = /^fmfl-node (\S+)/m.exec(a.out())![1];
  t.true(addrA.endsWith(`/p2p/${idA}`));

  const b = startBin(['--state-dir', join(dir, 'b'), '--peers', addrA, ...fast]);
  t.teardown(() => void b.child.kill('SIGKILL'));
  await waitFor(() => /^fmfl-node (\S+)/m.test(b.out()), 'b starts');
  const idB = /^fmfl-node (\S+)/m.exec(b.out())![1];
  await waitFor(() => a.out().includes(`join ${idB}`) && b.out().includes(`join ${idA}`), 'both print the other joining');

  b.child.kill('SIGINT');
  t.is(await b.exited, 0);
  await waitFor(() => a.out().includes(`leave ${idB}`), 'a prints b leaving');
  t.true(a.out().includes(`leave ${idB} (left)`), 'b said goodbye on SIGINT (not an expiry)');
  a.child.kill('SIGTERM');
  t.is(await a.exited, 0);
  t.regex(a.out(), /shutting down \(SIGTERM\)/);
  // One line per join and leave on the terminal (stdout and the info log together), not one from each.
  const count = (s: string, sub: string): number => s.split(sub).length - 1;
  t.is(count(a.out(), `join ${idB}`), 1);
  t.is(count(a.out(), `leave ${idB}`), 1);
  t.false(/member (joined|left)/.test(a.err()), 'the log keeps join/leave at debug');

  // `fmfl-node id` reads the same identity.
  const lines: string[] = [];
  const code = await main(['id', '--state-dir', join(dir, 'a')], { stdout: (s) => lines.push(s), stderr: () => {} });
  t.is(code, 0);
  t.is(lines.join('').trim(), idA);
});

test('usage and configuration errors exit with code 2 and a clear message', async (t) => {
  const dir = await tmp(t);
  const run = async (argv: string[]): Promise<{ code: number; err: string }> => {
    let err = '';
    const code = await main(argv, { stdout: () => {}, stderr: (s) => (err += s), shutdown: async () => 'test' });
    return { code, err };
  };
  let r = await run(['--peers', '/ip4/127.0.0.1/tcp/1', '--state-dir', dir]);
  t.is(r.code, 2);
  t.regex(r.err, /peers\.0: .*\/p2p\/<PeerId>/);
  r = await run(['--no-such-flag']);
  t.is(r.code, 2);
  r = await run(['--log-level', 'loud']);
  t.is(r.code, 2);
  await writeFile(join(dir, 'bad.json'), '{"federation": 3}');
  r = await run(['--config', join(dir, 'bad.json'), '--state-dir', dir]);
  t.is(r.code, 2);
  t.regex(r.err, /federation/);
  r = await run(['--swarm-key', join(dir, 'missing.key'), '--state-dir', dir]);
  t.is(r.code, 2);
  t.regex(r.err, /cannot read swarm key/);
  await writeFile(join(dir, 'bad.key'), 'hello');
  r = await run(['--swarm-key', join(dir, 'bad.key'), '--state-dir', dir]);
  t.is(r.code, 2);
  t.regex(r.err, /not a swarm key/);
});

test('swarm-key writes a key that a node accepts', async (t) => {
  const dir = await tmp(t);
  const key = join(dir, 'swarm.key');
  t.is(await main(['swarm-key', key], { stdout: () => {}, stderr: () => {} }), 0);
  const out: string[] = [];
  const code = await main(['--swarm-key', key, '--state-dir', join(dir, 's'), '--log-level', 'silent'], {
    stdout: (s) => out.push(s),
    stderr: () => {},
    shutdown: async () => 'test',
  });
  t.is(code, 0);
  t.regex(out.join(''), /listening \/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//);
});
