export { LeaderProtocol, leaderOrder, RoundStoppedError, ROUND_WIRE_VERSION, MAX_CONTRIBUTORS, MAX_LEADER_RANKS, UPDATE_TOPIC, GLOBAL_TOPIC, STATE_METHOD } from './leader.ts';
export { SecAggRound, SECAGG_TOPIC, MASKED_TOPIC, REVEAL_METHOD, DEFAULT_SECAGG_CLIP } from './secagg-round.ts';
export { GossipProtocol, MIX_TOPIC, PUBLIC_METHOD } from './gossip.ts';
export { Federation, FederationConfigSchema, FederationError } from './federation.ts';
export type { FederationConfig, RoundMetrics } from './federation.ts';
export { hashState, applyDelta, deltaOf, makeState, prototypeTensors, mergePrototypes, hex, StateError } from './state.ts';
export type { GlobalState } from './state.ts';
export { PROTOCOL_NAMES, DEFAULT_COMPRESSION, DEFAULT_ROUND_OPTIONS, DEFAULT_GOSSIP_MOMENTUM } from './types.ts';
export type { RoundProtocol, RoundOutcome, RoundContext, RoundOptions, CompressionOptions, LocalContribution, ProtocolSnapshot, ProtocolName } from './types.ts';
