/**
 * The small part of the mesh a round protocol talks to (Flower's "grid" boundary): publish, subscribe with a
 * validator, request, handle, signing, the roster, and who this node is. `Mesh` (src/mesh) implements it over libp2p;
 * tests implement it in memory (test/fake-mesh.ts) with scripted Byzantine peers, and `injectFaults`
 * (src/round/faults.ts) decorates any implementation.
 */
import type { MessageHandler, PublishResult, RequestHandler, RequestOptions, SubscribeOptions } from '../mesh/index.ts';

export interface MeshPort {
  /** Federation name (namespaces topics and signatures). */
  readonly federation: string;
  /** This node's PeerId string. */
  readonly selfId: string;
  /** The roster (sorted PeerIds), or undefined for an open mesh. */
  readonly roster: readonly string[] | undefined;
  /** Whether a peer is a member (anyone without a roster). */
  onRoster(peer: string): boolean;
  /** Subscribe to a topic; only messages the validator accepts reach the handler. */
  subscribe(name: string, handler: MessageHandler, opts?: SubscribeOptions): void;
  unsubscribe(name: string): void;
  publish(name: string, payload: Uint8Array): Promise<PublishResult>;
  /** Serve a stream method (requests from non-members are refused before the handler). */
  handleRequest(method: string, handler: RequestHandler): void;
  request(peer: string, method: string, body: Uint8Array, opts?: RequestOptions): Promise<Uint8Array>;
  /** Sign with this node's identity key (peers verify with the PeerId's public key). */
  signWithIdentity(data: Uint8Array): Promise<Uint8Array>;
}
