/**
 * Likely causes of a failed dial, for messages that tell the operator what to fix. libp2p reports a swarm-key
 * mismatch as a failed or stalled handshake and an allowlist refusal on the far side as a connection that closes
 * right after it opened, so the cause is a best guess from the error and the node's own settings.
 */

/** Why a configured peer could not be reached. */
export type DialCause = 'swarm-key' | 'not-allowlisted-here' | 'not-allowlisted-there' | 'unreachable' | 'timeout' | 'other';

/** A connection to a configured peer that closes sooner than this after it opened counts as refused by the peer. */
export const QUICK_CLOSE_MS = 2000;

/** A dial failure explained: a cause and one line for the log. */
export interface DialDiagnosis {
  cause: DialCause;
  hint: string;
}

function codeOf(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; cause?: { code?: unknown } } | null;
  return String(e?.code ?? e?.cause?.code ?? '');
}

/** Classify a libp2p dial error. `swarmKey`: whether this node runs a private network. */
export function classifyDialError(err: unknown, opts: { swarmKey: boolean }): DialDiagnosis {
  const name = String((err as { name?: unknown } | null)?.name ?? '');
  const msg = String((err as { message?: unknown } | null)?.message ?? err);
  const code = codeOf(err);
  if (name === 'DialDeniedError' || /gater/i.test(msg)) {
    return { cause: 'not-allowlisted-here', hint: 'not allowlisted: the peer is not on this node\'s --allow list' };
  }
  if (name === 'EncryptionFailedError' || /missing newline|psk|nonce|decrypt/i.test(msg)) {
    return { cause: 'swarm-key', hint: 'handshake failed: swarm key mismatch (the peer uses another --swarm-key, or only one side has one)' };
  }
  if (code === 'ECONNREFUSED') {
    return { cause: 'unreachable', hint: 'unreachable: nothing listens at that address (is the peer running, on that port?)' };
  }
  if (['EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EADDRNOTAVAIL', 'EAI_AGAIN', 'ECONNRESET'].includes(code)) {
    return { cause: 'unreachable', hint: `unreachable: ${code} (no route to that host, or the address is wrong)` };
  }
  if (name === 'TimeoutError' || name === 'AbortError' || code === 'ETIMEDOUT' || /timed? ?out|aborted/i.test(msg)) {
    return opts.swarmKey
      ? { cause: 'timeout', hint: 'no answer in time: unreachable (firewall, wrong address), or a swarm key mismatch (a peer with another key never completes the handshake)' }
      : { cause: 'timeout', hint: 'unreachable: no answer in time (firewall, wrong address, or the peer runs a private network: --swarm-key)' };
  }
  return { cause: 'other', hint: msg.split('\n')[0].slice(0, 200) };
}

/** The diagnosis of a connection the peer closed within QUICK_CLOSE_MS of opening it. */
export const CLOSED_BY_PEER: DialDiagnosis = {
  cause: 'not-allowlisted-there',
  hint: 'the peer closed the connection right after it opened: this node is probably not on its --allow list (or it is shutting down)',
};
