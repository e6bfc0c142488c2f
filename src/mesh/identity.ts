import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, generateKeyPairFromSeed, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { PeerId, PrivateKey } from '@libp2p/interface';
import { atomicWriteFile } from '../util/atomic.ts';
import { ConfigError } from '../util/errors.ts';

/** File name of the node's identity key inside its state directory (libp2p protobuf-encoded Ed25519 key). */
export const IDENTITY_FILE = 'identity.key';

/** A node identity: its Ed25519 private key and the PeerId derived from it. */
export interface Identity {
  privateKey: PrivateKey;
  peerId: PeerId;
  /** Whether the key was created by this call (false: loaded from disk). */
  created: boolean;
}

/**
 * Load the Ed25519 identity from `<stateDir>/identity.key`, or create and persist one (mode 0600, atomic
 * write) when the file does not exist. The same state directory always yields the same PeerId.
 */
export async function loadOrCreateIdentity(stateDir: string): Promise<Identity> {
  const path = join(stateDir, IDENTITY_FILE);
  let bytes: Uint8Array | undefined;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ConfigError(`cannot read identity file ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (bytes !== undefined) {
    let privateKey: PrivateKey;
    try {
      privateKey = privateKeyFromProtobuf(bytes);
    } catch (err) {
      throw new ConfigError(
        `identity file ${path} is corrupt (${(err as Error).message}); move it away to create a new identity`,
        { cause: err },
      );
    }
    if (privateKey.type !== 'Ed25519') {
      throw new ConfigError(`identity file ${path} holds a ${privateKey.type} key; fmfl needs Ed25519`);
    }
    // libp2p stores an Ed25519 key as seed ‖ public key and trusts the stored half: a flipped public-key byte would
    // make the node sign with one key while announcing the PeerId of another. Derive the public key from the seed.
    const raw = privateKey.raw;
    const derived = await generateKeyPairFromSeed('Ed25519', raw.subarray(0, 32));
    if (!Buffer.from(derived.publicKey.raw).equals(Buffer.from(privateKey.publicKey.raw))) {
      throw new ConfigError(
        `identity file ${path} is inconsistent: its stored public key does not match its private key (a damaged or ` +
          `tampered file); restore it from a backup to keep this node's PeerId, or move it away to create a new identity ` +
          `(and update the federation's roster with the new PeerId)`,
      );
    }
    return { privateKey, peerId: peerIdFromPrivateKey(privateKey), created: false };
  }
  const privateKey = await generateKeyPair('Ed25519');
  await atomicWriteFile(path, privateKeyToProtobuf(privateKey), 0o600);
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey), created: true };
}

/** A fresh in-memory Ed25519 identity (tests, ephemeral nodes). */
export async function ephemeralIdentity(): Promise<Identity> {
  const privateKey = await generateKeyPair('Ed25519');
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey), created: true };
}
