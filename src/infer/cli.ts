/**
 * `fmfl-node infer`: predict the class of images (PNG or JSON) with a model checkpoint, from one exit, within a
 * time budget, or together with k peers of a federation.
 */
import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { createMesh, parsePeerAddr } from '../mesh/mesh.ts';
import { loadSwarmKey } from '../mesh/swarm-key.ts';
import { ConfigError } from '../util/errors.ts';
import { PREDICT_MODES, type PredictMode } from './anytime.ts';
import { COMBINE_RULES, type CombineRule } from './combine.ts';
import { InferError } from './errors.ts';
import { MAX_PNG_BYTES, normalizeImages, parseInputBytes } from './input.ts';
import { DEFAULT_DEADLINE_MS, MAX_DEADLINE_MS, MAX_INFER_IMAGES, MAX_PEERS_K, MIN_DEADLINE_MS } from './limits.ts';
import { openModel } from './load.ts';
import { InferService } from './service.ts';

/** Fashion-MNIST class names (labels 0..9). */
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'] as const;
/** Largest --input file read. */
export const MAX_INPUT_FILE_BYTES = 8 * 1024 * 1024;
/** Default time to wait for peers advertising `infer` with --peers-k, ms. */
export const DEFAULT_DISCOVER_MS = 8_000;

/** Where the command writes. */
export interface InferIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/** Flags of `fmfl-node infer`. */
export interface InferFlags {
  checkpoint: string;
  input: string;
  exit?: string;
  budgetMs?: number;
  mode?: string;
  peersK?: number;
  peers?: string[];
  federation?: string;
  swarmKey?: string;
  deadlineMs?: number;
  combine?: string;
  discoverMs?: number;
  threads?: number;
  json?: boolean;
  modelsDir?: string;
}

function positive(name: string, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+(\.\d+)?$/.test(v) || !(n > 0) || n > max) throw new ConfigError(`${name} must be a number in (0, ${max}], got "${v}"`);
    return n;
  };
}

function whole(name: string, min: number, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new ConfigError(`${name} must be a whole number in ${min}..${max}, got "${v}"`);
    return Number(v);
  };
}

function list(value: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), ...value.split(',').map((s) => s.trim()).filter((s) => s.length > 0)];
}

const pct = (p: number): string => p.toFixed(3);

/**
 * Run `fmfl-node infer` with parsed flags. Returns the exit code (0 ok, 2 usage error; InferError and
 * ConfigError are thrown for the caller to report).
 */
export async function runInfer(f: InferFlags, io: InferIo): Promise<number> {
  const mode = (f.mode ?? 'head') as PredictMode;
  if (!PREDICT_MODES.includes(mode)) throw new ConfigError(`--mode must be one of ${PREDICT_MODES.join(', ')}`);
  const combine = (f.combine ?? 'mean') as CombineRule;
  if (!COMBINE_RULES.includes(combine)) throw new ConfigError(`--combine must be one of ${COMBINE_RULES.join(', ')}`);
  let exitOpt: number | 'auto' | undefined;
  if (f.exit !== undefined) {
    if (f.exit === 'auto') {
      if (f.budgetMs === undefined) throw new ConfigError('--exit auto needs --budget-ms');
      exitOpt = 'auto';
    } else {
      if (!/^\d+$/.test(f.exit)) throw new ConfigError(`--exit must be a whole number (1-based) or "auto", got "${f.exit}"`);
      if (f.budgetMs !== undefined) throw new ConfigError('give either --exit k or --budget-ms t (or --exit auto --budget-ms t), not both');
      exitOpt = Number(f.exit);
    }
  }
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(f.input));
  } catch (err) {
    throw new InferError('BAD_INPUT', `cannot read --input ${f.input}: ${(err as Error).message}`);
  }
  if (bytes.length > Math.max(MAX_INPUT_FILE_BYTES, MAX_PNG_BYTES)) throw new InferError('BAD_INPUT', `--input is over ${MAX_INPUT_FILE_BYTES} bytes`);
  const model = await openModel(f.checkpoint, { modelsDir: f.modelsDir, threads: f.threads, calibrate: exitOpt === 'auto' || f.budgetMs !== undefined ? 10 : false });
  try {
    const images = await parseInputBytes(bytes, model.input);
    if (typeof exitOpt === 'number' && (exitOpt < 1 || exitOpt > model.exits)) throw new ConfigError(`--exit must be in 1..${model.exits} for this model`);
    const exit = typeof exitOpt === 'number' ? exitOpt - 1 : exitOpt;
    const info = model.model.info as { recipe?: { dataset?: string } } | undefined;
    // Class names: the checkpoint's label set; checkpoints from before 2026-12 carry none (Fashion-MNIST's then).
    const names: readonly string[] | null = model.model.labels
      ?? (info?.recipe?.dataset === 'fashion-mnist' || model.model.source === 'federated' ? FASHION_MNIST_CLASSES : null);
    const label = (c: number): string => (names ? `${names[c]} (${c})` : String(c));
    const k = f.peersK ?? 0;
    if (k > 0) {
      if (images.length > MAX_INFER_IMAGES) throw new ConfigError(`collaborative prediction takes at most ${MAX_INFER_IMAGES} images`);
      return await collaborate(f, io, model, images, { k, combine, exit, mode, label });
    }
    const out: unknown[] = [];
    for (let start = 0; start < images.length; start += 64) {
      const chunk = images.slice(start, start + 64);
      const { predictions, result } = await model.predict(normalizeImages(chunk, model.input), chunk.length, { exit, budgetMs: f.budgetMs, mode });
      predictions.forEach((p, i) => {
        const top = p.probs[p.label];
        if (f.json) out.push({ image: start + i, label: p.label, ...(names ? { className: names[p.label] } : {}), probs: Array.from(p.probs, (x) => Math.round(x * 1e6) / 1e6), exit: p.exit + 1, mode, stoppedBy: result.stoppedBy });
        else io.stdout(`image ${start + i}: ${label(p.label)}  p=${pct(top)}  exit ${p.exit + 1}/${model.exits}  ${mode}${result.stoppedBy === 'budget' ? '  (budget)' : ''}\n`);
      });
    }
    if (f.json) io.stdout(JSON.stringify({ modelVersion: model.version, backbone: model.backboneName, latencyMs: model.latency, predictions: out }) + '\n');
    else io.stdout(`model ${model.version} on ${model.backboneName} (${model.model.source})\n`);
    return 0;
  } finally {
    await model.release();
  }
}

async function collaborate(
  f: InferFlags, io: InferIo, model: Awaited<ReturnType<typeof openModel>>, images: Uint8Array[],
  o: { k: number; combine: CombineRule; exit: number | 'auto' | undefined; mode: PredictMode; label: (c: number) => string },
): Promise<number> {
  const explicit = (f.peers ?? []).map((p) => {
    try {
      return parsePeerAddr(p).peerId.toString();
    } catch (err) {
      throw new ConfigError(`--peers: ${(err as Error).message}`);
    }
  });
  const mesh = await createMesh({
    federation: f.federation ?? 'default',
    peers: f.peers ?? [],
    swarmKey: f.swarmKey ? await loadSwarmKey(f.swarmKey) : undefined,
    heartbeatIntervalMs: 500,
    memberExpiryMs: 5_000,
  });
  const svc = new InferService({ mesh, model });
  await svc.start();
  await mesh.start();
  try {
    const discover = f.discoverMs ?? DEFAULT_DISCOVER_MS;
    const end = Date.now() + discover;
    const ready = (): boolean => (explicit.length > 0 ? explicit.every((p) => mesh.connectedPeers().includes(p)) : svc.candidates().length >= o.k);
    while (!ready() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    const peers = explicit.length > 0 ? explicit : svc.candidates();
    if (peers.length === 0) io.stderr(`fmfl-node: no peer serving predictions found within ${discover} ms; answering locally\n`);
    const r = await svc.collaborate(images, { k: o.k, peers, deadlineMs: f.deadlineMs ?? DEFAULT_DEADLINE_MS, combine: o.combine, local: { exit: o.exit, budgetMs: f.budgetMs, mode: o.mode } });
    if (f.json) {
      io.stdout(JSON.stringify({
        modelVersion: model.version, combine: r.combine, local: r.local ? { exit: r.local.exit } : null,
        predictions: r.probs.map((p, i) => ({ image: i, label: r.labels[i], probs: Array.from(p, (x) => Math.round(x * 1e6) / 1e6) })),
        answers: r.answers.map((a) => ({ peer: a.peer, exit: a.exit, modelVersion: a.modelVersion, ms: Math.round(a.ms * 100) / 100 })),
        ignored: r.ignored,
      }) + '\n');
    } else {
      r.probs.forEach((p, i) => io.stdout(`image ${i}: ${o.label(r.labels[i])}  p=${pct(p[r.labels[i]])}  (${r.combine} of ${r.answers.length} peer(s)${r.local ? ` + local exit ${r.local.exit}` : ''})\n`));
      for (const a of r.answers) io.stdout(`  peer ${a.peer}: exit ${a.exit}, model ${a.modelVersion}, ${a.ms.toFixed(1)} ms\n`);
      for (const x of r.ignored) io.stdout(`  ignored ${x.peer}: ${x.reason} (${x.detail})\n`);
    }
    return 0;
  } finally {
    await svc.stop();
    await mesh.stop();
  }
}

/**
 * Add the `infer` subcommand to the `fmfl-node` program. `setCode` receives its exit code.
 */
export function registerInferCommand(program: Command, io: InferIo, setCode: (code: number) => void): Command {
  return program
    .command('infer')
    .description('predict image classes with a model checkpoint: one exit, a time budget, or together with k peers')
    .requiredOption('--checkpoint <file>', 'model checkpoint (npm run finetune -- --save <file>, or a federated one)')
    .requiredOption('--input <file>', 'a 28x28 PNG (greyscale or RGB) or JSON {"pixels":[784 numbers 0..255]} / a list of those')
    .option('--exit <k|auto>', 'exit to answer from, 1-based; "auto" = deepest that fits --budget-ms (calibrated)')
    .addOption(new Option('--budget-ms <t>', 'time budget: stop before the exit that would overrun it').argParser(positive('--budget-ms', MAX_DEADLINE_MS)))
    .addOption(new Option('--mode <mode>', 'prediction from the exit head, the nearest class prototype, or the mean of all finished exits').choices([...PREDICT_MODES]).default('head'))
    .addOption(new Option('--peers-k <k>', 'also ask k peers of the federation and combine their answers').argParser(whole('--peers-k', 0, MAX_PEERS_K)))
    .addOption(new Option('--peers <multiaddr,...>', 'peers to ask (full multiaddrs with /p2p/<id>); default: discovered members serving infer').argParser(list))
    .option('--federation <name>', 'federation to join for --peers-k (default "default")')
    .option('--swarm-key <file>', 'private-network swarm key of the federation')
    .addOption(new Option('--deadline-ms <ms>', `deadline for peers' answers (default ${DEFAULT_DEADLINE_MS})`).argParser(whole('--deadline-ms', MIN_DEADLINE_MS, MAX_DEADLINE_MS)))
    .addOption(new Option('--combine <rule>', 'how answers are combined').choices([...COMBINE_RULES]).default('mean'))
    .addOption(new Option('--discover-ms <ms>', `how long to wait for peers (default ${DEFAULT_DISCOVER_MS})`).argParser(whole('--discover-ms', 0, 120_000)))
    .addOption(new Option('--threads <n>', 'onnxruntime threads').argParser(whole('--threads', 1, 256)))
    .option('--models-dir <dir>', "folder of the checkpoint's backbone (default models/; e.g. where import-model wrote it)")
    .option('--json', 'print one JSON object')
    .action(async (flags: InferFlags) => {
      setCode(await runInfer(flags, io));
    });
}
