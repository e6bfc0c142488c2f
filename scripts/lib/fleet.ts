/**
 * Heterogeneous fleets for the simulator: `--fleet 4:edge,4:full` names groups of nodes whose budgets come from the
 * node profiles `nodes/fleet-<group>.json` (or `nodes/<group>.json`), the one place a group is defined: the budget
 * keys of their `fl` part (maxDepth, rank, globalRank; budget and roundSeconds for a group that sizes itself with
 * `--budget auto`, whose maxDepth and rank are then bounds) and, for benchmarks, `emulateSlowdown` (a group that
 * emulates a slower device, e.g. nodes/fleet-edge-slow.json).
 */
import { existsSync } from 'node:fs';
import { resolveNodeConfig } from '../../src/node/config.ts';

/** The budget keys a fleet group takes from its profile. */
export interface GroupBudget {
  maxDepth?: number;
  rank?: number;
  globalRank?: number;
  budget?: 'fixed' | 'auto';
  roundSeconds?: number;
  /** `--emulate-slowdown` of the group's nodes (benchmark emulation of a slower device). */
  emulateSlowdown?: number;
}

export interface FleetGroup {
  name: string;
  count: number;
  profile: string;
  budget: GroupBudget;
  /** The profile's aggregator, if it names one (the simulator uses it unless --aggregator is given). */
  aggregator?: string;
}

/** Parse `count:group,...` and read each group's profile; node i belongs to the group its position falls in. */
export async function parseFleet(spec: string, dir = 'nodes'): Promise<FleetGroup[]> {
  const groups: FleetGroup[] = [];
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+):([a-z0-9-]+)$/.exec(part);
    if (!m || Number(m[1]) < 1) throw new Error(`--fleet entry "${part}" must look like 4:edge (a positive count and a group name)`);
    const profile = [`${dir}/fleet-${m[2]}.json`, `${dir}/${m[2]}.json`].find((p) => existsSync(p));
    if (!profile) throw new Error(`--fleet group "${m[2]}" has no profile: add ${dir}/fleet-${m[2]}.json with its fl budget (maxDepth, rank, globalRank)`);
    const fl = (await resolveNodeConfig({ file: profile })).fl ?? {};
    const budget: GroupBudget = {};
    if (fl.maxDepth !== undefined) budget.maxDepth = fl.maxDepth;
    if (fl.rank !== undefined) budget.rank = fl.rank;
    if (fl.globalRank !== undefined) budget.globalRank = fl.globalRank;
    if (fl.budget === 'auto') budget.budget = 'auto';
    if (fl.roundSeconds !== undefined) budget.roundSeconds = fl.roundSeconds;
    if (fl.emulateSlowdown !== undefined && fl.emulateSlowdown !== 1) budget.emulateSlowdown = fl.emulateSlowdown;
    groups.push({ name: m[2], count: Number(m[1]), profile, budget, ...(fl.aggregator !== undefined ? { aggregator: fl.aggregator } : {}) });
  }
  if (groups.length === 0) throw new Error('--fleet names no group');
  // One global rank for the whole fleet: the largest declared (global) rank.
  const globalRank = Math.max(...groups.map((g) => Math.max(g.budget.globalRank ?? 0, g.budget.rank ?? 0)));
  if (globalRank > 0) for (const g of groups) g.budget.globalRank = globalRank;
  return groups;
}

/** Group of each node, in node order. */
export function groupOfNode(groups: readonly FleetGroup[]): FleetGroup[] {
  return groups.flatMap((g) => Array.from({ length: g.count }, () => g));
}

/** Per group: the mean final accuracy of every exit its nodes serve, and of their last exit. */
export function groupSummary(groups: readonly FleetGroup[], finals: readonly { node: number; accuracy: number[] }[]): Record<string, { nodes: number; budget: GroupBudget; perExit: number[]; lastExit: number }> {
  const of = groupOfNode(groups);
  const out: Record<string, { nodes: number; budget: GroupBudget; perExit: number[]; lastExit: number }> = {};
  for (const g of groups) {
    const fs = finals.filter((f) => of[f.node] === g);
    const exits = Math.max(0, ...fs.map((f) => f.accuracy.length));
    const perExit = Array.from({ length: exits }, (_, e) => {
      const xs = fs.filter((f) => f.accuracy.length > e).map((f) => f.accuracy[e]);
      return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    });
    out[g.name] = { nodes: fs.length, budget: g.budget, perExit, lastExit: perExit.at(-1) ?? NaN };
  }
  return out;
}
