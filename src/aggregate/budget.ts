import type { TensorMap, UpdateManifest } from '../update/index.ts';
import { resizeLora } from './lora.ts';
import { AggregateError, AggregateRefusal } from './types.ts';

/** A node's training budget in a heterogeneous fleet: its LoRA rank against the federation's, and what it trains. */
export interface NodeBudget {
  /** Rank of the global adapter (every member's global state is at this rank). */
  globalRank: number;
  /** This node's LoRA rank (≤ globalRank): it trains the global truncated to it (HetLoRA, Cho et al. 2024). */
  rank: number;
  /** Tensors within its depth budget (`--max-depth`); absent: every tensor. */
  trained?: readonly string[];
}

/** The global tensors as a node of rank `budget.rank` trains them: LoRA factors truncated from the global rank. */
export function globalAtBudget(global: TensorMap, manifest: UpdateManifest, budget: NodeBudget): TensorMap {
  return budget.rank === budget.globalRank ? global : resizeLora(global, manifest, budget.globalRank, budget.rank);
}

/**
 * The delta a node with a budget sends: local − global, with the global taken at the node's rank, restricted to
 * the tensors it trained (depth budgets: the update then carries only those, see `ModelUpdate.partial`).
 * Throws AggregateError when the local tensors do not fit the budget.
 */
export function budgetDelta(local: TensorMap, global: TensorMap, manifest: UpdateManifest, budget: NodeBudget): TensorMap {
  const base = globalAtBudget(global, manifest, budget);
  const keep = budget.trained === undefined ? null : new Set(budget.trained);
  const out: TensorMap = new Map();
  for (const [k, g] of base) {
    if (keep !== null && !keep.has(k)) continue;
    const l = local.get(k);
    if (l === undefined || l.length !== g.length) {
      throw new AggregateError(AggregateRefusal.SHAPE_MISMATCH, `local ${k} ${l === undefined ? 'is missing' : `has ${l.length} values, the global at rank ${budget.rank} ${g.length}`}`);
    }
    const d = new Float32Array(g.length);
    for (let i = 0; i < d.length; i++) d[i] = l[i] - g[i];
    out.set(k, d);
  }
  return out;
}
