/**
 * The fmfl mesh: libp2p construction, membership, topic validators and request/response stream protocols.
 * Wire contracts live in protocols/; limits in protocols/LIMITS.md and ./constants.ts.
 */
export { Mesh, createMesh, parsePeerAddr } from './mesh.ts';
export type { MeshOptions, MessageMeta, MessageHandler, PayloadValidator, SubscribeOptions, PublishResult, RefusalEvent, DialState } from './mesh.ts';
export { classifyDialError, QUICK_CLOSE_MS } from './dial-errors.ts';
export { DEFAULT_MDNS_INTERVAL_MS, MDNS_SERVICE_TAG, type DiscoveryDialFailure, type DiscoveryOptions } from './discovery.ts';
export type { DialCause, DialDiagnosis } from './dial-errors.ts';
export { Membership, DEFAULT_CAPABILITIES } from './membership.ts';
export type { Capabilities, Member, LeaveReason, MembershipOptions } from './membership.ts';
export { RequestResponseProtocol } from './request-response.ts';
export type { RequestHandler, RequestContext, RequestOptions, RequestResponseLimits } from './request-response.ts';
export { RefusalReason, RefusalError, MeshError, isBenign } from './errors.ts';
export { loadOrCreateIdentity, ephemeralIdentity, IDENTITY_FILE } from './identity.ts';
export type { Identity } from './identity.ts';
export { parseRoster, readRosterFile } from './roster.ts';
export { parseSwarmKey, loadSwarmKey, generateSwarmKeyText, writeSwarmKey } from './swarm-key.ts';
export { FrameReader, encodeFrame } from './framing.ts';
export { BlobStore, sha256 } from './blob-store.ts';
export type { WireCounters } from './wire-counter.ts';
export * from './constants.ts';
