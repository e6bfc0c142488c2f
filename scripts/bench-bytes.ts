/**
 * `npm run bench:bytes -- [--json] [--sizes 8,16,32] [--rounds 4] [--local-steps 5] [--eval-images 2000]
 *   [--idle-s 10] [--committee 0] [--downlink-bits 16] [--downlink-error-feedback] [--out out/bench-bytes]`
 *
 * `--committee c`: the leader protocol's verifying committee (protocols/round.md "Verifying committee"; 0 = every
 * member verifies, the default). `--downlink-bits`: bits of the encoded step (what travels over round.step);
 * `--downlink-error-feedback`: carry its encoding error into the next step (round.md "Compressed downlink").
 * Wire bytes of the rotating-leader protocol per node per round against dense client-server FedAvg (issue 14 item 6).
 * For each N, one child process holds N nodes (libp2p meshes over the memory transport, onnxruntime trainers, the
 * product default model and compression) federating `--rounds` rounds over a full mesh. Measured per node:
 * - wire bytes: raw libp2p connection bytes (src/mesh/wire-counter.ts: pnet, Noise, Yamux, gossipsub data, control
 *   and heartbeats, membership heartbeats, sync streams), sent + received, between the end of round 1 and the end
 *   of the last round, divided by the rounds in between (round 1 carries the start-up: subscriptions, meshes);
 * - round payload bytes (updates, commitments, pulled inputs/steps/states) from the round metrics;
 * - background: wire bytes per node per second over `--idle-s` seconds with the meshes converged and no round
 *   running (membership heartbeats, gossipsub heartbeats and control). These grow with wall time, not with rounds,
 *   so the in-process per-round total depends on how long a round takes on this machine; `roundBytesPerNodePerRound`
 *   subtracts idle rate × round time to give what the round itself moves.
 * Baseline: one client of dense client-server FedAvg uploads and downloads the fp32 trainable tensors (LoRA + exit
 * heads): 2 × 4 B × trainable parameters. `ratio` = baseline / measured. Accuracy: every node's final model on
 * the first `--eval-images` test images (one evaluation per distinct final model; the leader's nodes share one).
 * The step every member applies is the one the dense global of wire version 1 carried (same seed, same bits), so
 * the final state does not depend on the downlink change. Prints one JSON document (`--json`: nothing else on
 * stdout) and writes it to --out. Not part of `npm test`; no assertion on speed.
 */
import { runChildScript } from './lib/procs.ts';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createMesh, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_MEMBER_EXPIRY_MS, type Mesh } from '../src/mesh/index.ts';
import { Federation, type RoundMetrics } from '../src/round/index.ts';
import { loadData } from '../src/data/index.ts';
import { loadBackbone } from '../src/model/backbone.ts';
import { silentLogger } from '../src/util/log.ts';
import { finishInproc, inprocHeartbeat } from './lib/inproc.ts';
import { instrumentMesh, breakdownPerNodePerRound, type ByteCounts } from './lib/byte-breakdown.ts';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

interface Spec {
  n: number;
  rounds: number;
  localSteps: number;
  evalImages: number;
  idleS: number;
  committee: number;
  downlinkBits: number;
  downlinkErrorFeedback: boolean;
}

interface SizeResult {
  n: number;
  rounds: number;
  trainableParams: number;
  denseFedAvgBytesPerClientPerRound: number;
  wireBytesPerNodePerRound: { sent: number; received: number; total: number };
  /** denseFedAvgBytesPerClientPerRound / wire total: how many times fewer bytes than dense FedAvg. */
  ratio: number;
  /** Wall time of a round (mean over nodes, rounds 2..R). */
  meanRoundSeconds: number;
  /** Wire bytes per node per second with the meshes idle (no round running): heartbeats and gossip control. */
  idleBytesPerNodePerSecond: number;
  /** wire total minus idle rate × round time: what the round itself moves; and the ratio on that. */
  roundBytesPerNodePerRound: number;
  roundRatio: number;
  /**
   * Sent + received per node per round (rounds 2..R) by kind (scripts/lib/byte-breakdown.ts): gossip messages by
   * topic, gossipsub control, sync-stream bodies by method; `transport` is the wire total minus these (Noise, Yamux,
   * framing, identify, ping).
   */
  breakdownPerNodePerRound: ByteCounts;
  /** The same per node per second while idle. */
  idleBreakdownPerNodePerSecond: ByteCounts;
  payloadBytesPerNodePerRound: { up: number; down: number };
  everyNodeFinished: boolean;
  identicalFinalState: boolean;
  finalHash: string;
  accuracy: number[];
  seconds: number;
}

const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

async function runChild(spec: Spec): Promise<SizeResult> {
  const t0 = performance.now();
  const N = spec.n;
  // Membership heartbeats at the product default (2 s / 10 s), or slower where N in-process nodes need it (inprocHeartbeat).
  const ih = inprocHeartbeat(N);
  const hb = ih.heartbeatIntervalMs >= DEFAULT_HEARTBEAT_INTERVAL_MS ? ih : { heartbeatIntervalMs: DEFAULT_HEARTBEAT_INTERVAL_MS, memberExpiryMs: DEFAULT_MEMBER_EXPIRY_MS };
  const tag = `bb-${process.pid}`;
  const meshes: Mesh[] = [];
  for (let i = 0; i < N; i++) {
    const m = await createMesh({ federation: 'bench', listen: [`/memory/${tag}-${i}`], ...hb });
    await m.start();
    meshes.push(m);
  }
  const counts = meshes.map((m) => instrumentMesh(m));
  const snap = (): ByteCounts[] => counts.map((c) => ({ ...c }));
  const cfg = (i: number): Record<string, unknown> => ({
    protocol: 'leader', rounds: spec.rounds, localSteps: spec.localSteps, batch: 64, shard: `${i}/${N}`, alpha: 0.5, partitionSeed: 42,
    testSlice: 100, prototypeSamples: 250, threads: 1, minMembers: N, committee: spec.committee, downlinkBits: spec.downlinkBits ?? 16, downlinkErrorFeedback: spec.downlinkErrorFeedback ?? false,
  });
  const feds = await Promise.all(meshes.map((m, i) => Federation.create(m, cfg(i), { logger: silentLogger() })));
  for (let i = 0; i < N; i++) for (let j = i + 1; j < N; j++) meshes[j].addPeer(meshes[i].multiaddrs()[0]);
  const tLink = performance.now();
  while (!meshes.every((m) => m.membership.memberIds().length === N - 1) && performance.now() - tLink < 180_000) await new Promise((r) => setTimeout(r, 50));
  // Background traffic while no round runs (membership heartbeats, gossipsub heartbeats and control): per second.
  const total = (): number => meshes.reduce((a, m) => a + m.wire.bytesIn + m.wire.bytesOut, 0);
  await new Promise((r) => setTimeout(r, 3000));
  const i0 = total();
  const c0 = snap();
  const ti = performance.now();
  await new Promise((r) => setTimeout(r, spec.idleS * 1000));
  const idleS = (performance.now() - ti) / 1000;
  const idleBytesPerNodePerS = (total() - i0) / N / idleS;
  const idleBreak = breakdownPerNodePerRound(c0, snap(), 1);
  for (const k of Object.keys(idleBreak)) idleBreak[k] = Math.round(idleBreak[k] / idleS);
  idleBreak.transport = Math.round(idleBytesPerNodePerS - Object.values(idleBreak).reduce((a, b) => a + b, 0));
  const roundSnaps: ByteCounts[][] = meshes.map(() => []);
  const metrics: RoundMetrics[][] = meshes.map(() => []);
  const wire: { sent: number; received: number; at: number }[][] = meshes.map(() => []);
  await Promise.all(feds.map((f, i) => f.run({
    onRound: (m) => {
      metrics[i].push(m);
      wire[i].push({ sent: meshes[i].wire.bytesOut, received: meshes[i].wire.bytesIn, at: performance.now() });
      roundSnaps[i].push({ ...counts[i] });
    },
  }).catch((err) => process.stderr.write(`node ${i} failed: ${String(err)}\n`))));
  const trainableParams = feds[0].manifest.tensors.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
  const bb = await loadBackbone();
  const test = (await loadData({ ref: 'fashion-mnist', input: bb.input, seed: 42 })).test;
  const indices = Uint32Array.from({ length: Math.min(spec.evalImages, test.n) }, (_, k) => k);
  const done = await finishInproc({ feds, meshes, test, indices });
  for (const f of feds) await f.release();

  const R = spec.rounds;
  const perNode = wire.filter((w) => w.length === R && R >= 2).map((w) => ({ sent: (w[R - 1].sent - w[0].sent) / (R - 1), received: (w[R - 1].received - w[0].received) / (R - 1) }));
  const sent = Math.round(mean(perNode.map((p) => p.sent)));
  const received = Math.round(mean(perNode.map((p) => p.received)));
  const dense = 2 * 4 * trainableParams;
  const roundS = mean(wire.filter((w) => w.length === R && R >= 2).map((w) => (w[R - 1].at - w[0].at) / 1000 / (R - 1)));
  const background = idleBytesPerNodePerS * roundS;
  const full = wire.map((w, i) => i).filter((i) => wire[i].length === R && R >= 2);
  const breakdown = breakdownPerNodePerRound(full.map((i) => roundSnaps[i][0]), full.map((i) => roundSnaps[i][R - 1]), R - 1);
  breakdown.transport = sent + received - Object.values(breakdown).reduce((a, b) => a + b, 0);
  const hashes = new Set(metrics.map((m) => m.at(-1)?.hash));
  return {
    n: N, rounds: R, trainableParams, denseFedAvgBytesPerClientPerRound: dense,
    wireBytesPerNodePerRound: { sent, received, total: sent + received }, ratio: Math.round((dense / (sent + received)) * 100) / 100,
    meanRoundSeconds: Math.round(roundS * 10) / 10, idleBytesPerNodePerSecond: Math.round(idleBytesPerNodePerS),
    roundBytesPerNodePerRound: Math.round(sent + received - background), roundRatio: Math.round((dense / (sent + received - background)) * 100) / 100,
    breakdownPerNodePerRound: breakdown, idleBreakdownPerNodePerSecond: idleBreak,
    payloadBytesPerNodePerRound: {
      up: Math.round(mean(metrics.flatMap((m) => m.slice(1).map((x) => x.bytesUp)))), down: Math.round(mean(metrics.flatMap((m) => m.slice(1).map((x) => x.bytesDown)))),
    },
    everyNodeFinished: metrics.every((m) => m.at(-1)?.version === R),
    identicalFinalState: hashes.size === 1,
    finalHash: String([...hashes][0] ?? ''),
    accuracy: done.finals[0]?.accuracy.map((a) => Math.round(a * 10000) / 10000) ?? [],
    seconds: Math.round((performance.now() - t0) / 1000),
  };
}

function spawnChild(spec: Spec): Promise<SizeResult> {
  return runChildScript<SizeResult>(resolve(import.meta.dirname, 'bench-bytes.ts'), spec, `n=${spec.n}`);
}

const childSpec = arg('child', '');
if (childSpec) {
  const r = await runChild(JSON.parse(childSpec) as Spec);
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
  process.exit(0);
}

const json = process.argv.includes('--json');
const log = (s: string): void => void (json ? process.stderr : process.stdout).write(`${s}\n`);
const sizes = arg('sizes', '8,16,32').split(',').map(Number).filter((n) => Number.isInteger(n) && n >= 2);
const base = { rounds: Number(arg('rounds', '4')), localSteps: Number(arg('local-steps', '5')), evalImages: Number(arg('eval-images', '2000')), idleS: Number(arg('idle-s', '10')), committee: Number(arg('committee', '0')), downlinkBits: Number(arg('downlink-bits', '16')), downlinkErrorFeedback: process.argv.includes('--downlink-error-feedback') };
const outDir = resolve(arg('out', 'out/bench-bytes'));
const results: SizeResult[] = [];
for (const n of sizes) {
  log(`N=${n}: ${base.rounds} rounds of ${base.localSteps} local steps ...`);
  const r = await spawnChild({ n, ...base });
  log(`  round ${r.meanRoundSeconds} s, idle ${r.idleBytesPerNodePerSecond} B/node/s, round-attributable ${r.roundBytesPerNodePerRound} B (${r.roundRatio}x)`);
  log(`  ${r.wireBytesPerNodePerRound.total} wire B/node/round (sent ${r.wireBytesPerNodePerRound.sent}, received ${r.wireBytesPerNodePerRound.received}), dense FedAvg ${r.denseFedAvgBytesPerClientPerRound} B: ${r.ratio}x fewer; accuracy ${r.accuracy.join(' / ')}`);
  log(`  per node per round: ${Object.entries(r.breakdownPerNodePerRound).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  results.push(r);
}
const doc = { bench: 'bytes', protocol: 'leader', model: 'product default', transport: 'memory (in process)', ...base, results };
await mkdir(outDir, { recursive: true });
await writeFile(join(outDir, 'bench-bytes.json'), JSON.stringify(doc, null, 2));
process.stdout.write(`${JSON.stringify(doc, null, json ? 2 : 0)}\n`);
