/**
 * Personal adapters (`--personal head`): private exit heads that never leave the node, trained on top of the shared
 * global adapter.
 *
 * Method: FedRep (Collins, Hassani, Mokhtari & Shakkottai, "Exploiting Shared Representations for Personalized
 * Federated Learning", ICML 2021), head phase. Each round, once the new global state is applied, the node trains its
 * personal heads for `steps` local steps on its own shard with the shared representation (backbone + global LoRA)
 * frozen, starting from the personal heads it kept from the previous round (the first round starts them from the
 * global heads). Where fmfl differs from FedRep: FedRep's representation phase trains the body against the personal
 * heads and shares the body alone; here the shared update (LoRA and the global exit heads) is trained exactly as
 * without personal adapters, so the federation keeps one real global model (heads included) whose accuracy on the
 * global test set does not depend on the personal adapters, and the personal heads are purely local state.
 *
 * The personal phase draws minibatches from a generator of its own and steps an AdamW of its own (bound to the
 * trainer's head arrays), so the shared training's order, optimizer state and update are exactly those of a run
 * without personal adapters.
 */
import type { Dataset } from '../data/index.ts';
import { Rng } from '../util/rng.ts';
import type { Weights } from '../model/vit.ts';
import { AdamW, joinOptimizerState, splitOptimizerState, type OptimizerState, type OptimizerStateMeta } from './optim.ts';
import { FmflError } from '../util/errors.ts';
import type { EvalResult, Trainer } from './trainer.ts';

/** A personal adapter could not be created, trained or restored. */
export class PersonalError extends FmflError {
  constructor(message: string) {
    super('PERSONAL', message);
  }
}

/** The personal-adapter kinds (`--personal`): none, or private exit heads (FedRep's head). */
export const PERSONAL_KINDS = ['none', 'head'] as const;
export type PersonalKind = (typeof PERSONAL_KINDS)[number];

/** Checkpoint tensor prefix of the personal heads' values. */
export const PERSONAL_PREFIX = 'personal/';
/** Checkpoint tensor prefix of the personal optimizer's buffers. */
export const PERSONAL_OPTIM_PREFIX = 'personal-optim/';

export class PersonalHeads {
  /** The personal tensors (the trainer's exit heads within its depth budget), in trainer order. */
  readonly names: readonly string[];
  private values: Weights | null = null;
  private readonly optimizer: AdamW;
  private readonly rng: Rng;

  private constructor(private readonly trainer: Trainer, names: string[], o: { lr: number; weightDecay: number; seed: number }) {
    this.names = names;
    this.optimizer = new AdamW(new Map(names.map((n) => [n, trainer.params.get(n)!])), { lr: o.lr, weightDecay: o.weightDecay });
    this.rng = new Rng(o.seed ^ 0x9e37);
  }

  /** Personal heads over the exit-head tensors `heads` that `trainer` trains. @throws PersonalError when it trains none. */
  static create(trainer: Trainer, heads: ReadonlySet<string>, o: { lr: number; weightDecay: number; seed: number }): PersonalHeads {
    const names = trainer.trainedSpecs.map((s) => s.name).filter((n) => heads.has(n));
    if (names.length === 0) throw new PersonalError('--personal head needs trained exit heads (this node trains none)');
    return new PersonalHeads(trainer, names, o);
  }

  /** Whether the heads exist yet (after the first personal phase or a restore). */
  get ready(): boolean {
    return this.values !== null;
  }

  /** Copies of the personal heads (for tests and checkpoints); empty before the first phase. */
  tensors(): Weights {
    return new Map([...(this.values ?? new Map<string, Float32Array>())].map(([k, v]) => [k, Float32Array.from(v)]));
  }

  /**
   * The head phase: with the trainer holding the current global model, train the personal heads for `steps` steps
   * on `indices` of `ds` with everything else frozen. Leaves the personal heads loaded in the trainer.
   */
  async train(ds: Dataset, indices: ArrayLike<number>, steps: number, lr: number, signal?: { readonly aborted: boolean }): Promise<number> {
    if (this.values === null) this.values = new Map(this.names.map((n) => [n, Float32Array.from(this.trainer.params.get(n)!)]));
    this.load();
    this.optimizer.lr = lr;
    const loss = await this.trainer.trainSteps(ds, indices, steps, undefined, signal, { optimizer: this.optimizer, names: this.names, rng: this.rng });
    for (const n of this.names) this.values.get(n)!.set(this.trainer.params.get(n)!);
    return loss;
  }

  /** The personal model (global representation + personal heads) on `indices` of `ds`; leaves the heads loaded. */
  async evaluate(ds: Dataset, indices: ArrayLike<number>): Promise<EvalResult> {
    if (this.values === null) throw new PersonalError('personal heads are not trained yet');
    this.load();
    return this.trainer.evaluate(ds, indices);
  }

  /** Values and optimizer buffers for the node's checkpoint. */
  checkpoint(): { tensors: Map<string, Float32Array>; meta: OptimizerStateMeta } | null {
    if (this.values === null) return null;
    const tensors = new Map([...this.values].map(([k, v]) => [PERSONAL_PREFIX + k, v]));
    const opt = splitOptimizerState(this.optimizer.state(), PERSONAL_OPTIM_PREFIX);
    for (const [k, v] of opt.tensors) tensors.set(k, v);
    return { tensors, meta: opt.meta };
  }

  /** Restore from a checkpoint's tensors (and optimizer meta). @throws PersonalError when a head is missing or misshapen. */
  restore(tensors: ReadonlyMap<string, Float32Array | { readonly data: Float32Array }>, meta: OptimizerStateMeta): void {
    const values: Weights = new Map();
    for (const n of this.names) {
      const t = tensors.get(PERSONAL_PREFIX + n);
      const v = t instanceof Float32Array ? t : t?.data;
      if (!v || v.length !== this.trainer.params.get(n)!.length) throw new PersonalError(`checkpoint: personal head ${n} missing or of the wrong size; start with a fresh --state-dir or without --personal`);
      values.set(n, Float32Array.from(v));
    }
    this.values = values;
    this.optimizer.loadState(joinOptimizerState(meta, tensors, PERSONAL_OPTIM_PREFIX) as OptimizerState);
  }

  private load(): void {
    for (const n of this.names) this.trainer.params.get(n)!.set(this.values!.get(n)!);
  }
}
