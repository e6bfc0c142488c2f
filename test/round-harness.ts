/**
 * What the leader protocol's unit tests share (test/unit/round-leader.test.ts, round-committee.test.ts): the round
 * options they start from, a fake trainer (a seeded delta per node and round), one member's record and the loop that
 * drives it as Federation.run does, against the in-memory mesh of test/fake-mesh.ts.
 */
import { DEFAULT_ROUND_OPTIONS, hex, type LeaderProtocol, type RoundOptions, type RoundOutcome } from '../src/round/index.ts';
import type { TensorMap } from '../src/update/index.ts';
import { Rng } from '../src/util/rng.ts';
import type { FakeNetwork, FakePort } from './fake-mesh.ts';

/** Rounds each federation runs. */
export const ROUNDS = 3;
/** Largest |delta| the fake trainer produces per value and round. */
export const DELTA = 0.01;

/**
 * Dense fp32 updates, fedavgm, a step of `downlinkBits`; deadlines long enough that honest rounds close with everyone in.
 */
export function roundOptions(o: Partial<RoundOptions> = {}, downlinkBits: RoundOptions['compression']['downlinkBits'] = 32): RoundOptions {
  return {
    ...DEFAULT_ROUND_OPTIONS, compression: { topk: 1, bits: 32, errorFeedback: false, downlinkBits, brotli: false },
    aggregator: 'fedavgm', roundTimeoutMs: 30_000, minRoundTimeoutMs: 20_000, leaderTimeoutMs: 500, maxRounds: ROUNDS, ...o,
  };
}

/** The fake trainer: the start tensors plus a seeded delta of node `i` in round `round`. */
export function train(start: TensorMap, i: number, round: number): TensorMap {
  const rng = new Rng(1000 * i + round);
  return new Map([...start].map(([k, v]) => [k, Float32Array.from(v, (x) => x + DELTA * (2 * rng.next() - 1))]));
}

/** One member: its port, its protocol and what it went through. */
export interface RoundNode {
  i: number;
  port: FakePort;
  proto: LeaderProtocol;
  outcomes: RoundOutcome[];
  versions: number[];
  /** The state hash this node held after each round (what it trained on next). */
  hashes: string[];
}

export const roundNode = (i: number, port: FakePort, proto: LeaderProtocol): RoundNode => ({ i, port, proto, outcomes: [], versions: [], hashes: [] });

export const hashOf = (n: RoundNode): string => hex(n.proto.globalState().hash);

/** One node's loop, as Federation.run: catch up, then train and exchange until the last round (`before`: a slow trainer). */
export async function runNode(n: RoundNode, rounds = ROUNDS, before?: (round: number) => Promise<void>): Promise<void> {
  await n.proto.catchUp();
  while (n.proto.round < rounds) {
    const tensors = train(n.proto.trainingStart(), n.i, n.proto.round + 1);
    await before?.(n.proto.round + 1);
    const out = await n.proto.exchange({ tensors, prototypes: [], sampleCount: 10 + n.i });
    n.outcomes.push(out);
    n.versions.push(n.proto.round);
    n.hashes.push(hashOf(n));
  }
}

/** Stop every member and let the fake network deliver what is in flight. */
export async function stopAll(nodes: readonly RoundNode[], net: FakeNetwork): Promise<void> {
  for (const n of nodes) await n.proto.stop();
  await net.settle();
}
