/**
 * Personal adapters: private tensors that never leave the node, trained on top of the shared global adapter.
 *
 * `--personal head`: private exit heads.
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
 * `--personal lora`: a private copy of the LoRA adapter and the exit heads (a second adapter next to the shared one):
 * Ditto's personal model v over every tensor the node trains. Method: Ditto (Li, Hu, Beirami & Smith, "Ditto: Fair
 * and Robust Federated Learning Through Personalization", ICML 2021). Each round, once the new global state w is applied, the node takes `steps`
 * local steps on its own shard on min_v F_k(v) + λ/2·||v − w||², starting from the v it kept from the previous round
 * (round 1 starts it at the global model); the gradient of the proximal term, λ(v − w), is added to every stepped
 * tensor's loss gradient before the optimizer step. The shared update (w's) is trained exactly as without personal
 * adapters, as in Ditto, whose global update is plain FedAvg. Where fmfl differs from Ditto: v is stepped by AdamW
 * (the node's own optimizer kind) instead of SGD, so λ trades the loss gradient against the pull to w per tensor
 * but the step length is Adam's; λ = 0 is local fine-tuning carried over rounds, a large λ keeps v within about one
 * step length of w.
 *
 * The personal phase draws minibatches from a generator of its own and steps an AdamW of its own (bound to the
 * trainer's arrays of the personal tensors), so the shared training's order, optimizer state and update are exactly
 * those of a run without personal adapters.
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

/** The personal-adapter kinds (`--personal`): none, private exit heads (FedRep's head), or a private LoRA and heads (Ditto). */
export const PERSONAL_KINDS = ['none', 'head', 'lora'] as const;
export type PersonalKind = (typeof PERSONAL_KINDS)[number];

/** Checkpoint tensor prefix of the personal heads' values. */
export const PERSONAL_PREFIX = 'personal/';
/** Checkpoint tensor prefix of the personal optimizer's buffers. */
export const PERSONAL_OPTIM_PREFIX = 'personal-optim/';

/** Largest accepted proximal weight λ (`--personal-lambda`): far past the point where v stays at w. */
export const MAX_PERSONAL_LAMBDA = 1e6;

export interface PersonalOptions {
  lr: number;
  weightDecay: number;
  seed: number;
  /** Ditto's proximal weight λ (kind 'lora'; 0..MAX_PERSONAL_LAMBDA). Ignored for 'head'. */
  lambda?: number;
}

/** A node's personal adapter (`--personal head` or `lora`): its values, optimizer and minibatch order. */
export class PersonalAdapter {
  /** The personal tensors, in trainer order: the exit heads ('head'), or every trained tensor, LoRA and heads ('lora'). */
  readonly names: readonly string[];
  /** The proximal weight λ towards the global model (0 for 'head', whose training freezes everything else). */
  readonly lambda: number;
  private values: Weights | null = null;
  private readonly optimizer: AdamW;
  private readonly rng: Rng;

  private constructor(readonly kind: 'head' | 'lora', private readonly trainer: Trainer, names: string[], o: PersonalOptions) {
    this.names = names;
    this.lambda = kind === 'lora' ? (o.lambda ?? 0) : 0;
    this.optimizer = new AdamW(new Map(names.map((n) => [n, trainer.params.get(n)!])), { lr: o.lr, weightDecay: o.weightDecay });
    this.rng = new Rng(o.seed ^ 0x9e37);
  }

  /**
   * The personal adapter of `kind` over what `trainer` trains (`heads`: the model's exit-head tensor names).
   * @throws PersonalError when the trainer trains no exit head, or for 'lora' no LoRA tensor, or λ is out of range.
   */
  static create(kind: 'head' | 'lora', trainer: Trainer, heads: ReadonlySet<string>, o: PersonalOptions): PersonalAdapter {
    const trained = trainer.trainedSpecs.map((s) => s.name);
    if (!trained.some((n) => heads.has(n))) throw new PersonalError(`--personal ${kind} needs trained exit heads (this node trains none)`);
    if (kind === 'head') return new PersonalAdapter(kind, trainer, trained.filter((n) => heads.has(n)), o);
    if (trainer.trainableSet !== 'lora+heads' || !trainer.lora) throw new PersonalError('--personal lora needs a LoRA adapter (--trainable lora+heads)');
    const lambda = o.lambda ?? 0;
    if (!Number.isFinite(lambda) || lambda < 0 || lambda > MAX_PERSONAL_LAMBDA) throw new PersonalError(`--personal-lambda must be in 0..${MAX_PERSONAL_LAMBDA}, got ${lambda}`);
    return new PersonalAdapter(kind, trainer, trained, o);
  }

  /** Whether the personal tensors exist yet (after the first personal phase or a restore). */
  get ready(): boolean {
    return this.values !== null;
  }

  /** Copies of the personal tensors (for tests and checkpoints); empty before the first phase. */
  tensors(): Weights {
    return new Map([...(this.values ?? new Map<string, Float32Array>())].map(([k, v]) => [k, Float32Array.from(v)]));
  }

  /**
   * The personal phase: with the trainer holding the current global model w, train the personal tensors for `steps`
   * steps on `indices` of `ds` (everything else frozen; 'lora' adds λ(v − w) to the gradients). Leaves the personal
   * tensors loaded in the trainer. Returns the mean training loss (cross-entropy etc., without the proximal term).
   */
  async train(ds: Dataset, indices: ArrayLike<number>, steps: number, lr: number, signal?: { readonly aborted: boolean }): Promise<number> {
    const global: Weights = new Map(this.names.map((n) => [n, Float32Array.from(this.trainer.params.get(n)!)]));
    if (this.values === null) this.values = new Map([...global].map(([k, v]) => [k, Float32Array.from(v)]));
    this.load();
    this.optimizer.lr = lr;
    const prox = this.kind === 'lora' && this.lambda > 0 ? { lambda: this.lambda, anchor: global } : undefined;
    const loss = await this.trainer.trainSteps(ds, indices, steps, undefined, signal, { optimizer: this.optimizer, names: this.names, rng: this.rng, prox });
    for (const n of this.names) this.values.get(n)!.set(this.trainer.params.get(n)!);
    return loss;
  }

  /** The personal model (frozen backbone + personal tensors + the rest of the global model) on `indices` of `ds`; leaves the personal tensors loaded. */
  async evaluate(ds: Dataset, indices: ArrayLike<number>): Promise<EvalResult> {
    if (this.values === null) throw new PersonalError('the personal adapter is not trained yet');
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

  /** Restore from a checkpoint's tensors (and optimizer meta). @throws PersonalError when a personal tensor is missing or misshapen. */
  restore(tensors: ReadonlyMap<string, Float32Array | { readonly data: Float32Array }>, meta: OptimizerStateMeta): void {
    const values: Weights = new Map();
    for (const n of this.names) {
      const t = tensors.get(PERSONAL_PREFIX + n);
      const v = t instanceof Float32Array ? t : t?.data;
      if (!v || v.length !== this.trainer.params.get(n)!.length) throw new PersonalError(`checkpoint: personal tensor ${n} missing or of the wrong size; start with a fresh --state-dir or without --personal`);
      values.set(n, Float32Array.from(v));
    }
    this.values = values;
    this.optimizer.loadState(joinOptimizerState(meta, tensors, PERSONAL_OPTIM_PREFIX) as OptimizerState);
  }

  private load(): void {
    for (const n of this.names) this.trainer.params.get(n)!.set(this.values!.get(n)!);
  }
}
