/**
 * The verdict of one `npm run chaos` scenario, computed from what the nodes left on disk: each node's checkpoint
 * (`federation.fmfl`: version and state hash), its JSON-lines metrics (one line per round, across restarts) and
 * its logs.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadCheckpoint } from '../../src/model/checkpoint.ts';
import { CHECKPOINT_FILE } from '../../src/round/federation.ts';
import type { RoundMetrics } from '../../src/round/index.ts';

export interface Verdict {
  scenario: string;
  nodes: number;
  rounds: number;
  /** Every node's checkpoint holds version `rounds`. */
  completed: boolean;
  /** Every node's checkpoint holds the same state hash. */
  finalStateIdentical: boolean;
  /** Per node, versions strictly increase over its round lines (across restarts) and end at its checkpoint's. */
  everyRoundAppliedOnce: boolean;
  /** Versions at which two nodes logged different state hashes. */
  forks: number[];
  /** Last-exit accuracy of node 0's final model on the whole test split (null if it did not finish). */
  accuracy: number | null;
  /** Mean time of a round line (local training + exchange + evaluation), over all nodes and rounds. */
  meanRoundS: number;
  wallS: number;
  /** Per node: version in its checkpoint (-1: none). */
  versions: number[];
  /** Round lines that came from a state pull rather than applying or leading the round. */
  syncedRounds: number;
  /** Rounds closed with fewer contributions than nodes. */
  partialRounds: number;
  /** `round paused` warnings (a node below the quorum waiting), over all nodes. */
  pausedLogs: number;
  /** Nodes that ran out of time and were SIGKILLed by the harness. */
  killedAtEnd: number[];
  events: string[];
}

type Line = RoundMetrics & { final?: boolean; time?: string };

async function readLines(path: string): Promise<Line[]> {
  try {
    return (await readFile(path, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
  } catch {
    return [];
  }
}

async function checkpointMeta(dir: string): Promise<{ version: number; hash: string } | null> {
  try {
    const ck = await loadCheckpoint(join(dir, CHECKPOINT_FILE));
    const m = ck.metadata as { version?: number; hash?: string };
    return typeof m?.version === 'number' && typeof m.hash === 'string' ? { version: m.version, hash: m.hash } : null;
  } catch {
    return null;
  }
}

const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

export async function computeVerdict(o: {
  scenario: string; nodes: number; rounds: number; dirs: string[]; wallS: number; events: string[]; killedAtEnd: number[];
}): Promise<Verdict> {
  const lines = await Promise.all(o.dirs.map((d) => readLines(join(d, 'metrics.jsonl'))));
  const rounds = lines.map((ls) => ls.filter((l) => !l.final));
  const cks = await Promise.all(o.dirs.map((d) => checkpointMeta(d)));
  const logs = await Promise.all(o.dirs.map((d) => readFile(join(d, 'stderr.log'), 'utf8').catch(() => '')));
  const byVersion = new Map<number, Set<string>>();
  for (const rs of rounds) for (const r of rs) {
    const s = byVersion.get(r.version) ?? new Set<string>();
    s.add(r.hash);
    byVersion.set(r.version, s);
  }
  // Checkpoint hashes are full SHA-256 hex; round lines carry their first 16 characters.
  cks.forEach((c) => {
    if (!c) return;
    const s = byVersion.get(c.version) ?? new Set<string>();
    s.add(c.hash.slice(0, 16));
    byVersion.set(c.version, s);
  });
  const forks = [...byVersion].filter(([, s]) => s.size > 1).map(([v]) => v).sort((a, b) => a - b);
  const increasing = rounds.every((rs, i) => rs.every((r, k) => k === 0 || r.version > rs[k - 1].version) && (rs.length === 0 || rs.at(-1)!.version === cks[i]?.version));
  const final0 = lines[0]?.filter((l) => l.final).at(-1) as unknown as { accuracy: number[] } | undefined;
  const all = rounds.flat();
  return {
    scenario: o.scenario,
    nodes: o.nodes,
    rounds: o.rounds,
    completed: cks.every((c) => c?.version === o.rounds),
    finalStateIdentical: cks.every((c) => c !== null && c.hash === cks[0]!.hash),
    everyRoundAppliedOnce: increasing && forks.length === 0,
    forks,
    accuracy: final0 ? Math.round(final0.accuracy[final0.accuracy.length - 1] * 10000) / 10000 : null,
    meanRoundS: Math.round(mean(all.map((r) => r.roundMs)) / 100) / 10,
    wallS: Math.round(o.wallS),
    versions: cks.map((c) => c?.version ?? -1),
    syncedRounds: all.filter((r) => r.via === 'synced').length,
    partialRounds: new Set(all.filter((r) => r.via !== 'synced' && r.contributors < o.nodes).map((r) => r.version)).size,
    pausedLogs: logs.reduce((a, l) => a + (l.match(/round paused/g)?.length ?? 0), 0),
    killedAtEnd: o.killedAtEnd,
    events: o.events,
  };
}

/** A Markdown table of verdicts (one row per scenario). */
export function verdictTable(vs: Verdict[]): string {
  const yes = (b: boolean): string => (b ? 'yes' : '**no**');
  const head = '| scenario | nodes | completed | final state identical | every round applied once | forks | accuracy | mean round s | wall s | synced / partial rounds | paused logs |';
  const sep = '| --- | ---: | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |';
  const rows = vs.map((v) => `| ${v.scenario} | ${v.nodes} | ${yes(v.completed)}${v.completed ? '' : ` (versions ${v.versions.join(',')})`} | ${yes(v.finalStateIdentical)} | ${yes(v.everyRoundAppliedOnce)} | ${v.forks.length ? v.forks.join(',') : 'none'} | ${v.accuracy === null ? '-' : `${(v.accuracy * 100).toFixed(2)}%`} | ${v.meanRoundS} | ${v.wallS} | ${v.syncedRounds} / ${v.partialRounds} | ${v.pausedLogs} |`);
  return [head, sep, ...rows].join('\n');
}
