/** The fmfl node: one validated config object → identity, swarm key, mesh, membership. */
export { FmflNode, PEERS_CACHE_FILE, MAX_CACHED_PEERS } from './fmfl-node.ts';
export type { FmflNodeOptions } from './fmfl-node.ts';
export { measureCapabilities, advertisedCapabilities, MEASURE_TRAIN_STEPS, MEASURE_FORWARDS } from './capabilities.ts';
export type { MeasuredCapabilities } from './capabilities.ts';
export { NodeConfigSchema, CapabilitiesSchema, parseNodeConfig, readConfigFile, resolveNodeConfig } from './config.ts';
export type { NodeConfig, NodeConfigInput } from './config.ts';
