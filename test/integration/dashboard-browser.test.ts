/**
 * The operations surface end to end: three fmfl-node CLIs (in this process, real TCP sockets) federate a tiny
 * model; node A serves its dashboard; headless Chromium (Debian's chromium through puppeteer-core) opens it and
 * waits until it shows round 2 with 3 members; the charts, mesh and tables are checked; a screenshot is saved in
 * out/. /status, /metrics and `fmfl-node status` are checked against the same federation.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';
import { main } from '../../src/cli/main.ts';
import { tempDir } from '../temp-dirs.ts';
import { tinyFl } from './fed-helpers.ts';
import { waitFor } from './mesh-helpers.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOT = 'out/dashboard.png';

interface CliNode {
  out: () => string;
  err: () => string;
  stop: (why: string) => void;
  exited: Promise<number>;
}

function startNode(argv: string[]): CliNode {
  let out = '';
  let err = '';
  let stop!: (why: string) => void;
  const shutdown = new Promise<string>((r) => (stop = r));
  const exited = main(argv, { stdout: (s) => void (out += s), stderr: (s) => void (err += s), shutdown: () => shutdown });
  return { out: () => out, err: () => err, stop, exited };
}

test.serial('the dashboard shows a live 3-node federation in headless Chromium; /status, /metrics and fmfl-node status agree', async (t) => {
  t.timeout(170_000);
  t.true(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does this)`);
  const dir = await tempDir('fmfl-dash-');
  const fast = ['--federation', 'dash', '--heartbeat-ms', '300', '--expiry-ms', '5000', '--log-level', 'warn', '--no-progress'];
  const profile = async (i: number): Promise<string> => {
    const file = join(dir, `node-${i}.json`);
    // Enough rounds that the federation is still running while the browser looks; the test stops it.
    await writeFile(file, JSON.stringify({ fl: await tinyFl(i, 3, { rounds: 40, prototypeEvery: 0, roundTimeoutMs: 20_000 }) }));
    return file;
  };
  const a = startNode(['--config', await profile(0), '--state-dir', join(dir, 'a'), '--http-port', '0', '--metrics', join(dir, 'a-metrics.jsonl'), ...fast]);
  const nodes = [a];
  let browser: Browser | undefined;
  t.teardown(async () => {
    await browser?.close().catch(() => {});
    for (const n of nodes) n.stop('teardown');
    await Promise.all(nodes.map((n) => n.exited.catch(() => 1)));
  });
  await waitFor(() => /^dashboard (\S+)/m.test(a.out()) && /^listening (\S+)/m.test(a.out()), 'node A prints its dashboard URL and address', 60_000);
  const url = /^dashboard (\S+)/m.exec(a.out())![1].replace(/\/$/, '');
  const addrA = /^listening (\S+)/m.exec(a.out())![1];
  t.regex(url, /^http:\/\/127\.0\.0\.1:\d+$/, 'loopback by default');
  await waitFor(() => a.out().includes('waiting for members 1/3'), 'A says it waits for members, with a count', 60_000);

  for (const i of [1, 2]) nodes.push(startNode(['--config', await profile(i), '--state-dir', join(dir, `n${i}`), '--peers', addrA, ...fast]));

  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--window-size=1400,1000'] });
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 1000 });
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(`${url}/`, { waitUntil: 'load' });
  await page.waitForFunction(
    "Number(document.getElementById('round').dataset.round) >= 2 && document.getElementById('members').dataset.count === '3'",
    { timeout: 120_000, polling: 250 },
  );
  t.deepEqual(pageErrors, [], 'no script errors on the page');
  t.is(await page.$eval('#live', (e) => e.textContent), 'live', 'updates arrive over server-sent events');

  // Charts: uPlot draws each series on a canvas; look for pixels in the series colours, not just any pixel.
  // (A string, not a function: tsx would wrap a function's inner helpers in its own __name(), unknown to the page.)
  const painted = (await page.evaluate(`(() => {
    const count = (sel, rgb) => {
      const c = document.querySelector(sel + ' canvas');
      if (!c) return -1;
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && Math.abs(d[i] - rgb[0]) < 24 && Math.abs(d[i + 1] - rgb[1]) < 24 && Math.abs(d[i + 2] - rgb[2]) < 24) n++;
      return n;
    };
    return { acc: count('#chart-acc', [79, 179, 255]), bytes: count('#chart-bytes', [255, 180, 84]) };
  })()`)) as { acc: number; bytes: number };
  t.true(painted.acc > 20, `accuracy chart draws the exit-1 series (${painted.acc} px)`);
  t.true(painted.bytes > 20, `bytes chart draws the downlink series (${painted.bytes} px)`);
  t.is(await page.$$eval('#mesh circle', (c) => c.length), 3, 'mesh shows three members');
  t.true((await page.$$eval('#mesh line', (l) => l.length)) >= 2, 'mesh shows who is connected to whom');
  t.is(await page.$$eval('#peers tbody tr', (r) => r.length), 3, 'peers table lists three members');
  t.true((await page.$$eval('#rounds tbody tr', (r) => r.length)) >= 2, 'round timeline lists the rounds');
  await mkdir('out', { recursive: true });
  await page.screenshot({ path: SHOT, fullPage: true });
  t.true((await readFile(SHOT)).byteLength > 10_000, `screenshot saved in ${SHOT}`);

  // /status: the same federation as JSON.
  const status = (await (await fetch(`${url}/status`)).json()) as import('../../src/ops/index.ts').StatusDocument;
  t.is(status.members.length, 3);
  t.true(status.federation!.round >= 2);
  t.is(status.federation!.protocol, 'leader');
  t.true(status.members.filter((m) => !m.self).every((m) => m.rttMs !== null && m.round !== null), 'members polled for round and RTT');
  t.true(status.mesh.edges.length >= 2);
  // /metrics: fmfl's series and libp2p's own.
  const metrics = await (await fetch(`${url}/metrics`)).text();
  for (const name of ['fmfl_rounds_total{protocol="leader"', 'fmfl_round_duration_seconds_bucket', 'fmfl_update_bytes_total{direction="up"}', 'fmfl_accuracy{exit="1"}', 'fmfl_members 3', 'fmfl_training_steps_per_second', 'libp2p_']) {
    t.true(metrics.includes(name), `/metrics has ${name}`);
  }
  // The terminal view of the same document.
  let table = '';
  t.is(await main(['status', '--http', url], { stdout: (s) => void (table += s), stderr: (s) => void (table += s) }), 0);
  for (const m of status.members) t.true(table.includes(m.id), `status table lists ${m.id}`);
  t.regex(table, /^round \d+\/40 {2}phase \w+/m);
  t.regex(table, /bytes: updates up \d/);
  let err = '';
  t.is(await main(['status', '--http', 'http://127.0.0.1:1'], { stdout: () => {}, stderr: (s) => void (err += s) }), 1);
  t.regex(err, /cannot reach http:\/\/127\.0\.0\.1:1/);

  for (const n of nodes) n.stop('test done');
  t.deepEqual(await Promise.all(nodes.map((n) => n.exited)), [0, 0, 0]);
  t.regex(a.out(), /^stopped \(test done\) at round \d+ of 40 \(\d+ run here\) in [\d.]+ s; final accuracy per exit [\d.]+\/[\d.]+%; checkpoint .*federation\.fmfl$/m, 'one end-of-run summary');
  const lines = (await readFile(join(dir, 'a-metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { time: string });
  t.true(lines.length >= 2 && lines.every((l) => !Number.isNaN(Date.parse(l.time))), '--metrics lines carry a timestamp');
});
