/**
 * `--budget auto` on a node: the rule of src/round/budget-auto.ts applied to the node's `fl` settings with what it
 * measured at start (src/node/capabilities.ts). The result is the same `fl` object with `maxDepth`, `rank` and
 * `globalRank` set to the pick (`globalRank` keeps the federation's rank: the configured `--global-rank`, else the
 * rank bound), and `budget: 'fixed'` so the federation trains exactly that.
 */
import { existsSync } from 'node:fs';
import { loadBackboneShared } from '../model/backbone.ts';
import { loadCheckpoint } from '../model/checkpoint.ts';
import { checkFederationConfig } from '../round/fl-config.ts';
import { pickBudget, type BudgetPick } from '../round/budget-auto.ts';
import type { MeasuredCapabilities } from './capabilities.ts';

/** Aggregators that take members of different ranks (README: Heterogeneous fleets); with the others the rank stays fixed. */
export const RANK_HETEROGENEOUS_AGGREGATORS: readonly string[] = ['hetlora-zero', 'hetlora-replicate', 'flexlora'];

/**
 * Resolve `budget: 'auto'` in `fl` (unchanged when it is not auto). @throws ConfigError on invalid settings
 * (e.g. auto without `roundSeconds`).
 */
export async function resolveAutoBudget(
  fl: Record<string, unknown>, measured: MeasuredCapabilities | null, checkpoint?: string,
): Promise<{ fl: Record<string, unknown>; pick: BudgetPick | null }> {
  const cfg = checkFederationConfig(fl);
  if (cfg.budget !== 'auto') return { fl, pick: null };
  const bb = await loadBackboneShared(cfg.backbone, cfg.backboneDir);
  const c = bb.cfg;
  const maxDepth = Math.min(cfg.maxDepth ?? c.depth, c.depth);
  const lora = cfg.trainable === 'lora+heads';
  const globalRank = cfg.globalRank ?? cfg.rank;
  const kept = checkpoint ? await storedBudget(checkpoint) : null;
  if (kept) {
    // A restart resumes at the budget it trained at: a new measurement can pick differently near a boundary, and
    // another depth or rank would not fit the checkpoint's tensors and optimizer state.
    const reason = `budget auto: resuming at depth ${kept.depth ?? c.depth}, rank ${kept.rank} (the pick stored in ${checkpoint}; a fresh --state-dir picks anew)`;
    return {
      fl: { ...fl, budget: 'fixed', maxDepth: kept.depth ?? undefined, rank: kept.rank, globalRank },
      pick: { depth: kept.depth ?? c.depth, rank: kept.rank, outcome: 'resumed', stepSeconds: Number.NaN, trainSeconds: Number.NaN, depthModel: 'linear', reason },
    };
  }
  const maxRank = Math.min(cfg.rank, globalRank);
  const pick = pickBudget({
    roundSeconds: cfg.roundSeconds!, localSteps: cfg.localSteps, batch: cfg.batch, maxDepth, maxRank,
    rankFlexible: lora && (RANK_HETEROGENEOUS_AGGREGATORS.includes(cfg.aggregator) || RANK_HETEROGENEOUS_AGGREGATORS.includes(cfg.aggregatorInner ?? '')),
    shape: { depth: c.depth, dim: c.dim, mlp: c.mlp, tokens: (c.image / c.patch) ** 2 + 1, targets: cfg.loraTargets },
    measurement: measured && measured.exits === c.depth
      ? { trainThroughput: measured.trainThroughput, rank: cfg.rank, exitLatencyMs64: measured.exitLatencyMs.batch64 }
      : measured ? { trainThroughput: measured.trainThroughput, rank: cfg.rank, exitLatencyMs64: [] } : null,
  });
  return { fl: { ...fl, budget: 'fixed', maxDepth: pick.depth, rank: pick.rank, globalRank }, pick };
}

/** The depth and rank a federation checkpoint was written at (`maxDepth` null: all blocks), or null without one. */
async function storedBudget(path: string): Promise<{ depth: number | null; rank: number } | null> {
  if (!existsSync(path)) return null;
  const meta = (await loadCheckpoint(path)).metadata as Record<string, unknown> | null;
  if (!meta || meta.kind !== 'federation' || typeof meta.loraRank !== 'number' || !('maxDepth' in meta)) return null;
  return { depth: typeof meta.maxDepth === 'number' ? meta.maxDepth : null, rank: meta.loraRank };
}
