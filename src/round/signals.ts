import type { EventEmitter } from 'node:events';
import { FmflError } from '../util/errors.ts';
import { RefusalError, RefusalReason } from '../mesh/index.ts';

/**
 * Wire version of round messages (both protocols). 2: the GlobalUpdate is a commitment without the dense step,
 * which members that cannot recompute pull over `round.step` (protocols/round.md); version-1 messages are refused
 * with UNSUPPORTED_VERSION.
 */
export const ROUND_WIRE_VERSION = 2;

/**
 * Decode a round stream request (`name` is its message name in round.proto): MALFORMED when the bytes do not decode,
 * UNSUPPORTED_VERSION when it is not of this node's round wire version.
 */
export function decodeRequest<T extends { version: number }>(codec: { decode(b: Uint8Array): T }, body: Uint8Array, name: string): T {
  let req: T;
  try {
    req = codec.decode(body);
  } catch {
    throw new RefusalError(RefusalReason.MALFORMED, `${name} does not decode`);
  }
  if (req.version !== ROUND_WIRE_VERSION) {
    throw new RefusalError(RefusalReason.UNSUPPORTED_VERSION, `${name} version ${req.version} (this node speaks round wire version ${ROUND_WIRE_VERSION})`);
  }
  return req;
}

export class RoundStoppedError extends FmflError {
  constructor() {
    super('ROUND_STOPPED', 'the round protocol was stopped');
  }
}

/** Bytes received per round, so a round's traffic is reported with the round it belongs to. */
export class RoundBytes {
  private readonly byRound = new Map<number, number>();

  add(round: number, bytes: number): void {
    this.byRound.set(round, (this.byRound.get(round) ?? 0) + bytes);
  }

  /** The bytes of every round up to `round`, which are then forgotten. */
  take(round: number): number {
    let sum = 0;
    for (const [r, b] of this.byRound) {
      if (r <= round) {
        sum += b;
        this.byRound.delete(r);
      }
    }
    return sum;
  }
}

/** Resolve on the next 'change' event of `events`, or after `ms` milliseconds, whichever comes first. */
export function nextChange(events: EventEmitter, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      events.off('change', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    events.once('change', done);
  });
}
