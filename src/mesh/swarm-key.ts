import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { atomicWriteFile } from '../util/atomic.ts';
import { ConfigError } from '../util/errors.ts';

const HEADER = '/key/swarm/psk/1.0.0/';
const CODEC = '/base16/';

/**
 * Parse a libp2p private-network swarm key (the go-ipfs format: `/key/swarm/psk/1.0.0/`, `/base16/`, then 64
 * hex characters). Returns the canonical file bytes that `@libp2p/pnet`'s `preSharedKey` expects.
 */
export function parseSwarmKey(text: string, source = 'swarm key'): Uint8Array {
  const lines = text.split(/\r\n|\r|\n/).map((l) => l.trim()).filter((l) => l.length > 0);
  if (lines.length !== 3 || lines[0] !== HEADER || lines[1] !== CODEC || !/^[0-9a-fA-F]{64}$/.test(lines[2])) {
    throw new ConfigError(
      `${source} is not a swarm key: expected three lines "${HEADER}", "${CODEC}" and 64 hex characters ` +
        '(create one with `npx fmfl-node swarm-key <file>`)',
    );
  }
  return new TextEncoder().encode(`${HEADER}\n${CODEC}\n${lines[2].toLowerCase()}`);
}

/** Read and parse a swarm key file. */
export async function loadSwarmKey(path: string): Promise<Uint8Array> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read swarm key ${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseSwarmKey(text, `swarm key file ${path}`);
}

/** A new random swarm key, as file text. */
export function generateSwarmKeyText(): string {
  return `${HEADER}\n${CODEC}\n${randomBytes(32).toString('hex')}\n`;
}

/** Write a new random swarm key to `path` (mode 0600). */
export async function writeSwarmKey(path: string): Promise<void> {
  await atomicWriteFile(path, generateSwarmKeyText(), 0o600);
}
