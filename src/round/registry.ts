/**
 * The round protocol registry (Flower's strategies): one entry per protocol name with its factory, the schema its
 * round options must satisfy, and the codec of its part of a checkpoint. The federation loop and the tools look a
 * protocol up here and never special-case one; protocols do not import each other. A new protocol = one entry.
 */
import { z } from 'zod';
import type { JsonValue } from '../model/checkpoint.ts';
import { ConfigError } from '../util/errors.ts';
import { GossipProtocol } from './gossip.ts';
import { leaderOrder, LeaderProtocol } from './leader.ts';
import type { GlobalState } from './state.ts';
import { PROTOCOL_NAMES, type ProtocolName, type ProtocolSnapshot, type RoundContext, type RoundOptions, type RoundProtocol } from './types.ts';

/** A protocol's own part of a checkpoint: tensors under its key prefixes and metadata fields. */
export interface SnapshotParts {
  tensors: Map<string, Float32Array>;
  meta: Record<string, JsonValue>;
}

/** Writes and reads a protocol's own part of a checkpoint (state, residual and protocol name are common). */
export interface SnapshotCodec {
  encode(snap: ProtocolSnapshot): SnapshotParts;
  /** `pick(prefix)`: the checkpoint's tensors under `prefix` (keys without it). */
  decode(meta: Readonly<Record<string, unknown>>, pick: (prefix: string) => Map<string, Float32Array>, state: GlobalState): Partial<ProtocolSnapshot>;
}

export interface RoundProtocolEntry {
  readonly name: ProtocolName;
  /** One-line description (help texts). */
  readonly summary: string;
  /** The round options this protocol accepts; refinements name what to change. Unknown keys pass. */
  readonly options: z.ZodType<unknown>;
  create(ctx: RoundContext, opts: RoundOptions, initial: GlobalState, restore?: ProtocolSnapshot): RoundProtocol;
  readonly snapshot: SnapshotCodec;
  /** Protocols with a round leader: who leads round `round` over the live members (status pages); absent otherwise. */
  readonly leaderOf?: (federation: string, round: number, members: readonly string[]) => string | null;
}

/** Aggregators that work on the mean delta alone (what secure aggregation reveals). */
export const SECAGG_AGGREGATORS: readonly string[] = ['fedavg', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad'];

const toF64 = (m: Map<string, Float32Array>): Map<string, Float64Array> => new Map([...m].map(([k, v]) => [k, Float64Array.from(v)]));

const leaderOptions = z
  .object({
    aggregator: z.string(),
    quorum: z.number().gt(0).max(1).optional(),
    roundTimeoutMs: z.number().int().positive(),
    minRoundTimeoutMs: z.number().int().positive().optional(),
    leaderTimeoutMs: z.number().int().positive(),
    maxRounds: z.number().int().min(1).optional(),
    secagg: z.object({ clip: z.number().positive() }).optional(),
    committee: z.number().int().min(0).optional(),
    compression: z.object({ downlinkErrorFeedback: z.boolean().optional() }).loose().optional(),
  })
  .loose()
  .superRefine((o, ctx) => {
    if (o.committee === 1 || o.committee === 2) {
      ctx.addIssue({ code: 'custom', path: ['committee'], message: `a verifying committee of ${o.committee} lets ${o.committee === 1 ? 'its one member alone decide' : 'either member stall'} what every other member applies: use 0 (every member verifies) or at least 3` });
    }
    if (o.committee && ['fedadam', 'fedyogi', 'fedadagrad'].includes(o.aggregator)) {
      ctx.addIssue({ code: 'custom', path: ['committee'], message: `a verifying committee needs a server state every member can derive from the applied step (fedavgm, or a stateless rule): ${o.aggregator}'s moments would be lost off the committee` });
    }
    if (o.secagg && o.committee) {
      ctx.addIssue({ code: 'custom', path: ['committee'], message: 'a verifying committee needs cleartext updates: secure aggregation (secagg) hides them; drop one of the two' });
    }
    if (o.secagg && o.compression?.downlinkErrorFeedback) {
      ctx.addIssue({ code: 'custom', path: ['compression', 'downlinkErrorFeedback'], message: 'downlink error feedback needs members that recompute the step: secure aggregation hides the updates; drop one of the two' });
    }
    if (o.secagg && !SECAGG_AGGREGATORS.includes(o.aggregator)) {
      ctx.addIssue({
        code: 'custom', path: ['aggregator'],
        message: `secure aggregation reveals only the mean update: aggregator must be one of ${SECAGG_AGGREGATORS.join(', ')}, not ${o.aggregator}`,
      });
    }
  });

const gossipOptions = z
  .object({
    gossipGamma: z.number().min(0).max(1),
    gossipMomentum: z.number().min(0).lt(1).optional(),
    roundTimeoutMs: z.number().int().positive(),
    secagg: z.undefined({ error: 'secure aggregation (secagg) needs the leader protocol' }).optional(),
  })
  .loose();

const LEADER: RoundProtocolEntry = {
  name: 'leader',
  summary: 'rotating round leader; every member verifies the aggregate by recomputation and attests it',
  options: leaderOptions,
  create: (ctx, opts, initial, restore) => new LeaderProtocol(ctx, opts, initial, restore),
  leaderOf: (federation, round, members) => leaderOrder(federation, round, [...members].sort())[0] ?? null,
  snapshot: {
    encode(snap) {
      const tensors = new Map<string, Float32Array>();
      if (snap.serverOpt) {
        for (const [k, v] of snap.serverOpt.m) tensors.set(`server-m/${k}`, Float32Array.from(v));
        for (const [k, v] of snap.serverOpt.v) tensors.set(`server-v/${k}`, Float32Array.from(v));
      }
      return {
        tensors,
        meta: {
          serverOptStep: snap.serverOpt?.step ?? null,
          certificate: snap.certificate ? snap.certificate.map((a) => Buffer.from(a).toString('base64')) : null,
          serverKnown: snap.serverKnown ?? null,
        },
      };
    },
    decode(meta, pick) {
      const out: Partial<ProtocolSnapshot> = {};
      if (typeof meta.serverOptStep === 'number') out.serverOpt = { step: meta.serverOptStep, m: toF64(pick('server-m/')), v: toF64(pick('server-v/')) };
      if (Array.isArray(meta.certificate)) {
        out.certificate = (meta.certificate as unknown[]).slice(0, 4096).filter((b): b is string => typeof b === 'string').map((b) => new Uint8Array(Buffer.from(b, 'base64')));
      }
      if (typeof meta.serverKnown === 'boolean') out.serverKnown = meta.serverKnown;
      return out;
    },
  },
};

const GOSSIP: RoundProtocolEntry = {
  name: 'gossip',
  summary: 'CHOCO-SGD gossip averaging without a leader; every node keeps its own model',
  options: gossipOptions,
  create: (ctx, opts, initial, restore) => new GossipProtocol(ctx, opts, initial, restore),
  snapshot: {
    encode(snap) {
      const tensors = new Map<string, Float32Array>();
      if (snap.publicModel) for (const [k, v] of snap.publicModel.tensors) tensors.set(`public/${k}`, v);
      return { tensors, meta: { publicRound: snap.publicModel?.round ?? null } };
    },
    decode(meta, pick, state) {
      const pub = pick('public/');
      return pub.size ? { publicModel: { round: typeof meta.publicRound === 'number' ? meta.publicRound : state.version, tensors: pub } } : {};
    },
  },
};

/** Every round protocol, by name. */
export const ROUND_PROTOCOLS: Readonly<Record<ProtocolName, RoundProtocolEntry>> = { leader: LEADER, gossip: GOSSIP };

for (const n of PROTOCOL_NAMES) {
  if (ROUND_PROTOCOLS[n]?.name !== n) throw new Error(`round protocol registry: ${n} has no entry of its own`);
}

/** A protocol name that is not in the registry. */
export class UnknownProtocolError extends ConfigError {
  constructor(name: string) {
    super(`unknown round protocol '${name}': use one of ${PROTOCOL_NAMES.join(', ')}`);
  }
}

/** The registry entry of `name`; throws UnknownProtocolError for a name that is not registered. */
export function roundProtocol(name: string): RoundProtocolEntry {
  const e = (ROUND_PROTOCOLS as Record<string, RoundProtocolEntry | undefined>)[name];
  if (!Object.hasOwn(ROUND_PROTOCOLS, name) || !e) throw new UnknownProtocolError(name);
  return e;
}

/** Issues of `opts` against `name`'s options schema, one `path: message` line each (empty when valid). */
export function protocolOptionIssues(name: string, opts: RoundOptions): string[] {
  const r = roundProtocol(name).options.safeParse(opts);
  return r.success ? [] : r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message));
}
