/** Operating a node: status collection, Prometheus metrics, the HTTP status server and dashboard, the status table. */
export { FmflMetrics, ROUND_DURATION_BUCKETS } from './metrics.ts';
export { NodeStatus, STATUS_VERSION } from './status.ts';
export type { StatusDocument, StatusMember, StatusRound, StatusFederation, FederationInfo } from './status.ts';
export { startStatusServer, DEFAULT_STATUS_HOST, DEFAULT_STATUS_PORT, STATUS_REQUEST_TIMEOUT_MS } from './server.ts';
export type { StatusServer, StatusServerOptions } from './server.ts';
export { parsePeerStatus, pollPeer, servePeerStatus, PHASES } from './peer-status.ts';
export type { Phase, PeerStatus, PolledPeer } from './peer-status.ts';
export * from './limits.ts';
export { fetchStatus, formatStatus, table, StatusFetchError } from './table.ts';
