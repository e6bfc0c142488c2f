import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { multiaddr } from '@multiformats/multiaddr';
import { peerIdFromString } from '@libp2p/peer-id';
import { ConfigError } from '../util/errors.ts';
import { LOG_LEVELS } from '../util/log.ts';
import { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_MEMBER_EXPIRY_MS, NAME_RE } from '../mesh/constants.ts';
import { parsePeerAddr } from '../mesh/mesh.ts';
import { DEFAULT_MDNS_INTERVAL_MS } from '../mesh/discovery.ts';
import { describeFlIssue, FederationConfigSchema, knob } from '../round/fl-config.ts';
import { InferConfigSchema } from '../infer/node-inference.ts';

const multiaddrString = z.string().refine(
  (s) => {
    try {
      multiaddr(s);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'not a multiaddr (example: /ip4/127.0.0.1/tcp/4001)' },
);

const peerAddrString = z.string().refine(
  (s) => {
    try {
      parsePeerAddr(s);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'not a multiaddr ending in /p2p/<PeerId> (copy a full address printed by the peer at start)' },
);

const peerIdString = z.string().refine(
  (s) => {
    try {
      peerIdFromString(s);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'not a PeerId (example: 12D3KooW...)' },
);

/** Capabilities a node advertises in its heartbeats. */
export const CapabilitiesSchema = z
  .object({
    device: z.string().min(1).max(64).default('cpu'),
    trainThroughput: z.number().finite().min(0).max(1e12).default(0),
    maxExitDepth: z.number().int().min(0).max(1024).default(0),
    datasetSize: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
    loraRank: z.number().int().min(0).max(4096).default(0),
    features: z.array(z.string().min(1).max(64)).max(16).default([]),
  })
  .strict();

/**
 * Node keys (outside `fl`) whose `fmfl-node` flag is generated from the schema, as the federation keys' are
 * (src/cli/schema-options.ts: name, help, default; booleans that default to on are typed `--no-<flag>`).
 */
export const NODE_KNOBS = {
  /** Measure device, training throughput and per-exit latency at start (src/node/capabilities.ts; ~2 s on 2 cores). */
  measureCapabilities: knob(z.boolean().default(true), {
    flag: '--measure-capabilities',
    help: 'measure the execution provider, training throughput and per-exit latency at start (about 2 s) and advertise them instead of the declared capabilities',
  }),
} as const;

/** Defaults of {@link NODE_KNOBS}. */
export const NODE_KNOB_DEFAULTS: Readonly<Record<keyof typeof NODE_KNOBS, unknown>> = Object.freeze(z.object(NODE_KNOBS).parse({}));

/**
 * The one configuration object of an fmfl node: what `--config` files hold (JSON, these keys) and what CLI
 * flags override. Unknown keys are refused.
 */
export const NodeConfigSchema = z
  .object({
    /** Human label used in logs. */
    name: z.string().min(1).max(64).optional(),
    /** Federation name: namespaces all topics and protocols. */
    federation: z.string().regex(NAME_RE, 'must be 1..64 characters of [a-zA-Z0-9._-]').default('default'),
    /** Listen multiaddrs. */
    listen: z.array(multiaddrString).min(1).max(16).default(['/ip4/127.0.0.1/tcp/0']),
    /** Peers dialled at start and redialled with backoff. */
    peers: z.array(peerAddrString).max(256).default([]),
    /**
     * Bootstrap peers (@libp2p/bootstrap): full multiaddrs ending in /p2p/<id>, dialled at start and redialled with
     * backoff; the swarm key and the allowlist apply as to any peer.
     */
    bootstrap: z.array(peerAddrString).max(256).default([]),
    /** Find peers on the local network by multicast DNS (@libp2p/mdns); the swarm key and the allowlist still apply. */
    mdns: z.boolean().default(false),
    /** mDNS query period (ms). */
    mdnsIntervalMs: z.number().int().min(100).max(3_600_000).default(DEFAULT_MDNS_INTERVAL_MS),
    /** Folder holding identity.key and peers.json; absent: an ephemeral identity, nothing persisted. */
    stateDir: z.string().min(1).optional(),
    /** Path of a private-network swarm key file. */
    swarmKey: z.string().min(1).optional(),
    /** Allowlist of PeerIds (absent: anyone with the swarm key may connect). */
    allow: z.array(peerIdString).max(4096).optional(),
    /**
     * The federation's members (default: `allow`): gossip signed by anyone else is rejected whoever relays it, and
     * rounds count roster members only. The CLI's `--roster <file>` reads it from a file (JSON array or one PeerId a line).
     */
    roster: z.array(peerIdString).max(4096).optional(),
    /** Log level. */
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** JSON log lines instead of human-readable ones. */
    jsonLogs: z.boolean().default(false),
    /** Membership heartbeat interval (ms). */
    heartbeatIntervalMs: z.number().int().min(10).max(600_000).default(DEFAULT_HEARTBEAT_INTERVAL_MS),
    /** Membership expiry (ms); must exceed the heartbeat interval. */
    memberExpiryMs: z.number().int().min(20).max(3_600_000).default(DEFAULT_MEMBER_EXPIRY_MS),
    /**
     * Capabilities advertised in heartbeats. With `measureCapabilities` (the default) device, trainThroughput and
     * the per-exit latency are measured at start and replace what is declared here; a declared `maxExitDepth` or
     * `loraRank` (> 0) caps the measured value (a budget).
     */
    capabilities: CapabilitiesSchema.default(CapabilitiesSchema.parse({})),
    ...NODE_KNOBS,
    /**
     * Federated training: the keys of src/round/fl-config.ts (the same schema generates the CLI and simulator flags),
     * every one optional. Present: the node trains and federates.
     */
    fl: FederationConfigSchema.partial().optional(),
    /** Serve predictions (src/infer): model checkpoint, max exits, HTTP endpoint (`httpPort`; loopback by default). */
    infer: InferConfigSchema.optional(),
    /**
     * The node's HTTP server (src/ops): dashboard `/`, `/status`, `/events`, `/metrics`, and `/predict` + `/healthz`
     * when `infer` is set. Absent: no HTTP server (an `infer.httpPort` is used as `http.port` then).
     */
    http: z
      .object({
        /** Port (0: any free port). */
        port: z.number().int().min(0).max(65535),
        /** Listen host (default 127.0.0.1: this machine only). */
        host: z.string().min(1).max(255).default('127.0.0.1'),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((c) => c.memberExpiryMs > c.heartbeatIntervalMs, {
    message: 'memberExpiryMs must be greater than heartbeatIntervalMs',
    path: ['memberExpiryMs'],
  });

/** A validated node configuration (all defaults filled). */
export type NodeConfig = z.output<typeof NodeConfigSchema>;
/** What a config file or a set of flags may hold (everything optional). */
export type NodeConfigInput = z.input<typeof NodeConfigSchema>;

function describe(err: z.ZodError, source: string, input: unknown): string {
  const fl = typeof input === 'object' && input !== null ? (input as { fl?: unknown }).fl : undefined;
  const lines = err.issues.map((i) =>
    i.path[0] === 'fl' && i.path.length > 1 ? `  ${describeFlIssue({ ...i, path: i.path.slice(1) }, fl)}` : `  ${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`,
  );
  return `invalid node configuration (${source}):\n${lines.join('\n')}`;
}

/** Validate a configuration object; throws `ConfigError` listing every problem by key. */
export function parseNodeConfig(input: unknown, source = 'config'): NodeConfig {
  const r = NodeConfigSchema.safeParse(input);
  if (!r.success) throw new ConfigError(describe(r.error, source, input));
  return r.data;
}

/** Read a JSON profile (e.g. nodes/cpu-small.json) without validating it yet. */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new ConfigError(`config file ${path} must hold a JSON object`);
  }
  return obj as Record<string, unknown>;
}

/**
 * Merge a config file (optional) with flag overrides (flags win; `undefined` flags are ignored) and validate.
 * `capabilities` merge key by key.
 */
export async function resolveNodeConfig(opts: { file?: string; overrides?: NodeConfigInput }): Promise<NodeConfig> {
  const base = opts.file !== undefined ? await readConfigFile(opts.file) : {};
  const over = Object.fromEntries(Object.entries(opts.overrides ?? {}).filter(([, v]) => v !== undefined));
  const merged: Record<string, unknown> = { ...base, ...over };
  if (typeof base.capabilities === 'object' && base.capabilities !== null && over.capabilities !== undefined) {
    merged.capabilities = { ...(base.capabilities as object), ...(over.capabilities as object) };
  }
  if (typeof base.infer === 'object' && base.infer !== null && over.infer !== undefined) {
    merged.infer = { ...(base.infer as object), ...(over.infer as object) };
  }
  if (typeof base.http === 'object' && base.http !== null && over.http !== undefined) {
    merged.http = { ...(base.http as object), ...(over.http as object) };
  }
  if (typeof base.fl === 'object' && base.fl !== null && over.fl !== undefined) {
    merged.fl = { ...(base.fl as object), ...(over.fl as object) };
  }
  return parseNodeConfig(merged, opts.file !== undefined ? `${opts.file} + flags` : 'flags');
}
