/**
 * The federation's roster: the PeerIds of its members, shared out of band (`--allow`, or a `--roster <file>`).
 * Every gossip message whose signer is not on the roster is rejected, whoever relays it (protocols/membership.md,
 * "Roster"); leader order, quorum and contributors are computed over roster members only.
 */
import { readFile } from 'node:fs/promises';
import { peerIdFromString } from '@libp2p/peer-id';
import { ConfigError } from '../util/errors.ts';
import { MAX_ROSTER_BYTES, MAX_ROSTER_MEMBERS } from './constants.ts';

/** Parse and normalize roster entries (PeerId strings); throws ConfigError naming the bad entry. */
export function parseRoster(entries: readonly string[], source = 'roster'): string[] {
  if (entries.length > MAX_ROSTER_MEMBERS) throw new ConfigError(`${source} lists ${entries.length} members; at most ${MAX_ROSTER_MEMBERS} are allowed`);
  const out = new Set<string>();
  for (const [i, e] of entries.entries()) {
    try {
      out.add(peerIdFromString(e.trim()).toString());
    } catch {
      throw new ConfigError(`${source}: entry ${i + 1} ("${e.slice(0, 80)}") is not a PeerId; list the ids members print with \`npx fmfl-node id\``);
    }
  }
  return [...out].sort();
}

/**
 * Read a roster file: a JSON array of PeerIds, a JSON object `{"members": [...]}`, or text with one PeerId per line
 * (blank lines and `#` comments ignored). At most MAX_ROSTER_BYTES and MAX_ROSTER_MEMBERS entries.
 */
export async function readRosterFile(path: string): Promise<string[]> {
  let text: string;
  try {
    const bytes = await readFile(path);
    if (bytes.byteLength > MAX_ROSTER_BYTES) throw new Error(`larger than ${MAX_ROSTER_BYTES} bytes`);
    text = bytes.toString('utf8');
  } catch (err) {
    throw new ConfigError(`cannot read roster file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const trimmed = text.trim();
  let entries: unknown;
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    try {
      entries = JSON.parse(trimmed);
    } catch (err) {
      throw new ConfigError(`roster file ${path} is not valid JSON: ${(err as Error).message}`);
    }
    if (!Array.isArray(entries)) entries = (entries as { members?: unknown }).members;
    if (!Array.isArray(entries) || !entries.every((e) => typeof e === 'string')) {
      throw new ConfigError(`roster file ${path} must hold a JSON array of PeerId strings or {"members": [...]}`);
    }
  } else {
    entries = trimmed.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter((l) => l.length > 0);
  }
  const list = parseRoster(entries as string[], `roster file ${path}`);
  if (list.length === 0) throw new ConfigError(`roster file ${path} lists no members`);
  return list;
}
