import { Rng } from '../util/rng.ts';
import { DatasetError, NUM_CLASSES } from './types.ts';

/** Default minimum samples per client for {@link partitionDirichlet} (NIID-Bench, Li et al. 2021, uses 10). */
export const DEFAULT_MIN_CLIENT_SAMPLES = 10;
/** Default number of whole re-draws {@link partitionDirichlet} tries before repairing small clients. */
export const DEFAULT_DIRICHLET_RETRIES = 100;

/** A partition: one sorted index array per client; the arrays are disjoint and cover their input. */
export type Partition = Uint32Array[];

function checkClients(numClients: number, n: number): void {
  if (!Number.isInteger(numClients) || numClients < 1) throw new DatasetError(`numClients must be a positive integer, got ${numClients}`);
  if (numClients > n) throw new DatasetError(`cannot split ${n} samples over ${numClients} clients`);
}

function checkSeed(seed: number): void {
  if (!Number.isInteger(seed)) throw new DatasetError(`seed must be an integer, got ${seed}`);
}

/**
 * IID partition: shuffle 0..n-1 with `seed` and cut it into `numClients` contiguous shards whose sizes differ
 * by at most one (the first n % numClients clients get one more). Each shard is returned sorted.
 * @throws DatasetError on invalid arguments.
 */
export function partitionIid(n: number, numClients: number, seed: number): Partition {
  if (!Number.isInteger(n) || n < 0) throw new DatasetError(`n must be a non-negative integer, got ${n}`);
  checkClients(numClients, n);
  checkSeed(seed);
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  new Rng(seed).shuffle(perm);
  const base = Math.floor(n / numClients);
  const extra = n % numClients;
  const out: Partition = [];
  let at = 0;
  for (let c = 0; c < numClients; c++) {
    const size = base + (c < extra ? 1 : 0);
    out.push(perm.slice(at, at + size).sort());
    at += size;
  }
  return out;
}

/** Options of {@link partitionDirichlet}. */
export interface DirichletOptions {
  /** Every client gets at least this many samples (default {@link DEFAULT_MIN_CLIENT_SAMPLES}). */
  minSamples?: number;
  /** Whole re-draws tried before the repair step (default {@link DEFAULT_DIRICHLET_RETRIES}). */
  maxRetries?: number;
  /**
   * Stop giving a class's samples to clients that already hold n / numClients samples (the balancing step
   * of the reference implementation; default true). Keeps client sizes within a sane range.
   */
  balance?: boolean;
  /** Number of classes (default 10). */
  numClasses?: number;
}

/**
 * Dirichlet label-skew partition (Hsu, Qi & Brown 2019, "Measuring the effects of non-identical data
 * distribution for federated visual classification", in the per-class form of NIID-Bench, Li et al. 2021):
 * for each class k, shuffle its samples, draw proportions p ~ Dir(alpha, ..., alpha) over the clients,
 * (with `balance`) zero the share of clients already holding >= n / numClients samples and renormalize,
 * and cut the class's samples at the cumulative proportions. Small alpha (0.1) gives strong skew, large
 * alpha (100) nearly IID.
 *
 * Minimum size guarantee: the whole draw is repeated (up to `maxRetries` times) until every client holds at
 * least `minSamples` samples. If no draw succeeds (tiny alpha with many clients), a deterministic repair
 * moves random samples from the currently largest client to each client that is short, so the result
 * always satisfies the minimum (the repair slightly weakens the skew of those clients).
 *
 * Seeded and deterministic; each client's indices are returned sorted.
 * @throws DatasetError on invalid arguments or when numClients * minSamples > n.
 */
export function partitionDirichlet(labels: ArrayLike<number>, numClients: number, alpha: number, seed: number, opts: DirichletOptions = {}): Partition {
  const n = labels.length;
  const numClasses = opts.numClasses ?? NUM_CLASSES;
  const minSamples = opts.minSamples ?? DEFAULT_MIN_CLIENT_SAMPLES;
  const maxRetries = opts.maxRetries ?? DEFAULT_DIRICHLET_RETRIES;
  const balance = opts.balance ?? true;
  checkClients(numClients, n);
  checkSeed(seed);
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw new DatasetError(`alpha must be a positive finite number, got ${alpha}`);
  if (!Number.isInteger(minSamples) || minSamples < 0) throw new DatasetError(`minSamples must be a non-negative integer, got ${minSamples}`);
  if (numClients * minSamples > n) throw new DatasetError(`${numClients} clients x ${minSamples} minimum samples exceeds the ${n} samples`);
  if (!Number.isInteger(maxRetries) || maxRetries < 1) throw new DatasetError(`maxRetries must be a positive integer, got ${maxRetries}`);

  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < n; i++) {
    const c = labels[i];
    if (!(c >= 0 && c < numClasses) || !Number.isInteger(c)) throw new DatasetError(`label ${String(c)} at ${i} out of range 0..${numClasses - 1}`);
    byClass[c].push(i);
  }
  const rng = new Rng(seed);
  const cap = n / numClients;
  let clients: number[][] = [];
  for (let attempt = 0; attempt < maxRetries; attempt++) {
    clients = Array.from({ length: numClients }, () => []);
    for (const idxAll of byClass) {
      if (idxAll.length === 0) continue;
      const idx = rng.shuffle(idxAll.slice());
      const p = rng.dirichlet(alpha, numClients);
      let sum = 0;
      for (let j = 0; j < numClients; j++) {
        if (balance && clients[j].length >= cap) p[j] = 0;
        sum += p[j];
      }
      if (!(sum > 0)) {
        // Every eligible share underflowed to 0 (tiny alpha): give the class to one random eligible client.
        const eligible: number[] = [];
        for (let j = 0; j < numClients; j++) if (!balance || clients[j].length < cap) eligible.push(j);
        p.fill(0);
        p[eligible[rng.int(eligible.length)]] = 1;
        sum = 1;
      }
      let cum = 0;
      let start = 0;
      for (let j = 0; j < numClients; j++) {
        cum += p[j] / sum;
        const end = j === numClients - 1 ? idx.length : Math.min(idx.length, Math.floor(cum * idx.length));
        for (let t = start; t < end; t++) clients[j].push(idx[t]);
        if (end > start) start = end;
      }
    }
    if (clients.every((c) => c.length >= minSamples)) return clients.map((c) => Uint32Array.from(c).sort());
  }
  // Repair: top up short clients from the largest one.
  for (let j = 0; j < numClients; j++) {
    while (clients[j].length < minSamples) {
      let big = 0;
      for (let k = 1; k < numClients; k++) if (clients[k].length > clients[big].length) big = k;
      const from = clients[big];
      const t = rng.int(from.length);
      clients[j].push(from[t]);
      from[t] = from[from.length - 1];
      from.pop();
    }
  }
  return clients.map((c) => Uint32Array.from(c).sort());
}

/** A parsed shard spec: client `index` (0-based) of `count`. */
export interface ShardSpec {
  readonly index: number;
  readonly count: number;
}

/**
 * Parse a shard spec `"i/n"` with a 0-based index, 0 <= i < n (e.g. `"0/4"` is the first of four shards).
 * @throws DatasetError with the accepted form when it does not parse.
 */
export function parseShardSpec(spec: string): ShardSpec {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec);
  if (!m) throw new DatasetError(`shard spec '${spec}' must look like i/n with 0 <= i < n, e.g. 0/4`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || index >= count) throw new DatasetError(`shard spec '${spec}': need 0 <= i < n (indices are 0-based)`);
  return { index, count };
}

/** Options of {@link shardIndices}. */
export interface ShardOptions {
  /** Partition seed; every client must use the same one to get disjoint shards. */
  seed: number;
  /** 'iid' (default) or 'dirichlet'. */
  scheme?: 'iid' | 'dirichlet';
  /** Dirichlet concentration (required for 'dirichlet'). */
  alpha?: number;
  /** Passed to {@link partitionDirichlet}. */
  dirichlet?: DirichletOptions;
}

/**
 * The indices of shard `i` of `n` of a dataset with these labels: computes the full seeded partition and
 * returns client i's part, so independent nodes with the same seed and spec get disjoint shards.
 * @throws DatasetError on an invalid spec or options.
 */
export function shardIndices(labels: ArrayLike<number>, spec: ShardSpec | string, opts: ShardOptions): Uint32Array {
  const { index, count } = typeof spec === 'string' ? parseShardSpec(spec) : spec;
  if (!Number.isInteger(index) || !Number.isInteger(count) || count < 1 || index < 0 || index >= count) {
    throw new DatasetError(`shard ${index}/${count}: need integers 0 <= i < n`);
  }
  const scheme = opts.scheme ?? 'iid';
  if (scheme === 'iid') return partitionIid(labels.length, count, opts.seed)[index];
  if (scheme === 'dirichlet') {
    if (opts.alpha === undefined) throw new DatasetError("scheme 'dirichlet' needs alpha");
    return partitionDirichlet(labels, count, opts.alpha, opts.seed, opts.dirichlet)[index];
  }
  throw new DatasetError(`unknown partition scheme '${String(scheme)}': use 'iid' or 'dirichlet'`);
}

/** Count of each label among `indices` (all samples when omitted). */
export function labelHistogram(labels: ArrayLike<number>, indices?: ArrayLike<number>, numClasses = NUM_CLASSES): Uint32Array {
  const h = new Uint32Array(numClasses);
  const m = indices ? indices.length : labels.length;
  for (let i = 0; i < m; i++) {
    const j = indices ? indices[i] : i;
    const c = labels[j];
    if (!(c >= 0 && c < numClasses)) throw new DatasetError(`label ${String(c)} at ${j} out of range 0..${numClasses - 1}`);
    h[c]++;
  }
  return h;
}

/** Per-client label histograms of a partition. */
export function partitionHistograms(labels: ArrayLike<number>, parts: Partition, numClasses = NUM_CLASSES): Uint32Array[] {
  return parts.map((p) => labelHistogram(labels, p, numClasses));
}

/** A fixed-width text table of per-client label histograms (one row per client, plus its total). */
export function formatHistograms(hists: readonly Uint32Array[]): string {
  if (hists.length === 0) return '';
  const k = hists[0].length;
  const w = Math.max(5, ...hists.flatMap((h) => Array.from(h, (v) => String(v).length + 1)));
  const head = 'client'.padEnd(7) + Array.from({ length: k }, (_, c) => String(c).padStart(w)).join('') + 'total'.padStart(w + 1);
  const rows = hists.map((h, i) => String(i).padEnd(7) + Array.from(h, (v) => String(v).padStart(w)).join('') + String(h.reduce((a, b) => a + b, 0)).padStart(w + 1));
  return [head, ...rows].join('\n');
}

/**
 * A node's own test split (personalised FL evaluation, as in FedRep, Collins et al. 2021, and Ditto, Li et al. 2021:
 * each client's test data follows its training label distribution): `size` indices of the test split whose label
 * proportions follow `trainHistogram` (largest-remainder rounding), drawn per class without replacement with `seed`.
 * A class the test split holds fewer of than asked gives all it has. Returned sorted.
 * @throws DatasetError on invalid arguments or an empty histogram.
 */
export function matchedTestIndices(testLabels: ArrayLike<number>, trainHistogram: ArrayLike<number>, size: number, seed: number): Uint32Array {
  checkSeed(seed);
  if (!Number.isInteger(size) || size < 1) throw new DatasetError(`size must be a positive integer, got ${size}`);
  const k = trainHistogram.length;
  let total = 0;
  for (let c = 0; c < k; c++) {
    const h = trainHistogram[c];
    if (!(h >= 0) || !Number.isFinite(h)) throw new DatasetError(`train histogram count ${String(h)} for class ${c} is not a finite non-negative number`);
    total += h;
  }
  if (total === 0) throw new DatasetError('train histogram is empty: a node needs training samples to have a matched test split');
  const byClass: number[][] = Array.from({ length: k }, () => []);
  for (let i = 0; i < testLabels.length; i++) {
    const c = testLabels[i];
    if (c >= 0 && c < k) byClass[c].push(i);
  }
  const exact = Array.from({ length: k }, (_, c) => (size * trainHistogram[c]) / total);
  const want = exact.map(Math.floor);
  let left = size - want.reduce((a, b) => a + b, 0);
  const order = exact.map((x, c) => [x - Math.floor(x), c] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, c] of order) {
    if (left === 0) break;
    want[c]++;
    left--;
  }
  const rng = new Rng(seed);
  const out: number[] = [];
  for (let c = 0; c < k; c++) {
    if (want[c] === 0) continue;
    const pick = rng.shuffle(byClass[c].slice());
    for (let t = 0; t < Math.min(want[c], pick.length); t++) out.push(pick[t]);
  }
  return Uint32Array.from(out).sort();
}
