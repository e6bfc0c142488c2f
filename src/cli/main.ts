import { existsSync, readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { DEFAULT_STATUS_HOST, DEFAULT_STATUS_PORT, fetchStatus, formatStatus } from '../ops/index.ts';
import { FmflNode } from '../node/fmfl-node.ts';
import { NODE_KNOB_DEFAULTS, NODE_KNOBS, resolveNodeConfig, type NodeConfigInput } from '../node/config.ts';
import { addSchemaOptions, typedValues } from './schema-options.ts';
import { loadOrCreateIdentity } from '../mesh/identity.ts';
import { writeSwarmKey } from '../mesh/swarm-key.ts';
import { readRosterFile } from '../mesh/roster.ts';
import { LOG_LEVELS } from '../util/log.ts';
import { FmflError } from '../util/errors.ts';
import { registerInferCommand } from '../infer/cli.ts';
import { registerImportModelCommand } from './import-model.ts';
import { addFederationOptions, flFlagsToConfig, runFederation, wantsFederation, type FlFlags } from './federate.ts';
import { preflightFederation } from '../round/preflight.ts';

/** Where the CLI writes and what stops a running node; tests pass their own. */
export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Resolves with a reason when the node should shut down (default: first SIGINT or SIGTERM). */
  shutdown?: () => Promise<string>;
}

const defaultIo: CliIo = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
};

/**
 * Resolves with the first SIGINT or SIGTERM. Later ones are ignored while the node shuts down: `npx` forwards the
 * terminal's Ctrl-C to the node, which therefore gets it twice, and the default action of the second would kill the
 * node mid-shutdown (exit 130 instead of 0).
 */
function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    let first: NodeJS.Signals | undefined;
    const on = (sig: NodeJS.Signals): void => {
      if (first !== undefined) return;
      first = sig;
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

function list(value: string, prev: string[] | undefined): string[] {
  const items = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  return [...(prev ?? []), ...items];
}

function int(name: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new FmflError('CONFIG', `${name} must be a whole number of milliseconds, got "${value}"`);
    return Number(value);
  };
}

interface RunFlags extends FlFlags {
  listen?: string[];
  peers?: string[];
  bootstrap?: string[];
  mdns?: boolean;
  stateDir?: string;
  federation?: string;
  config?: string;
  swarmKey?: string;
  allow?: string[];
  roster?: string;
  logLevel?: string;
  jsonLogs?: boolean;
  heartbeatMs?: number;
  expiryMs?: number;
  checkpoint?: string;
  httpPort?: number;
  httpHost?: string;
}

/** The fmfl version (package.json). */
export const FMFL_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const EXAMPLES = `
Examples:
  fmfl-node --http-port 8470                                   run a node with its dashboard at http://127.0.0.1:8470/
  fmfl-node --state-dir .a --data fashion-mnist --shard 0/2 --rounds 10 --http-port 8470
  fmfl-node --state-dir .b --data fashion-mnist --shard 1/2 --rounds 10 --peers <address printed by the first>
  fmfl-node --config nodes/fl-site.json --swarm-key swarm.key  run a profile in a private network
  fmfl-node status --http http://127.0.0.1:8470                the federation as the node sees it
  fmfl-node swarm-key swarm.key                                create a private-network key (share it with members)
  fmfl-node infer --checkpoint model.fmfl --input digit.png    predict locally
  fmfl-node import-model vit.onnx --name my-vit --lora-targets 'attn/qkv/'   bring your own ONNX model
  fmfl-node help infer                                         help of a command
`;

/** Default state directory of the CLI (relative to the working directory). */
export const DEFAULT_STATE_DIR = '.fmfl';

async function runNode(flags: RunFlags, cmd: Command, io: CliIo): Promise<number> {
  const overrides: NodeConfigInput = {
    listen: flags.listen,
    peers: flags.peers,
    bootstrap: flags.bootstrap,
    mdns: flags.mdns,
    stateDir: flags.stateDir,
    federation: flags.federation,
    swarmKey: flags.swarmKey,
    allow: flags.allow,
    roster: flags.roster !== undefined ? await readRosterFile(flags.roster) : undefined,
    logLevel: flags.logLevel as NodeConfigInput['logLevel'],
    jsonLogs: flags.jsonLogs,
    heartbeatIntervalMs: flags.heartbeatMs,
    memberExpiryMs: flags.expiryMs,
    ...typedValues(cmd, NODE_KNOBS),
  };
  if (flags.checkpoint !== undefined) overrides.infer = { checkpoint: flags.checkpoint };
  if (flags.httpPort !== undefined) overrides.http = { port: flags.httpPort, host: flags.httpHost ?? '127.0.0.1' };
  else if (flags.httpHost !== undefined) throw new FmflError('CONFIG', '--http-host needs --http-port');
  const flOver = flFlagsToConfig(cmd);
  if (Object.keys(flOver).length > 0) overrides.fl = flOver;
  const cfg = await resolveNodeConfig({ file: flags.config, overrides });
  if (cfg.stateDir === undefined) cfg.stateDir = DEFAULT_STATE_DIR;
  const federate = wantsFederation(flOver, cfg.fl);
  // Every configuration error (bad values, a shard out of range, an unknown backbone, missing data) before the mesh starts.
  if (federate) preflightFederation(cfg.fl ?? {}, { filesystem: true });
  const node = await FmflNode.create(cfg);
  node.on('join', (m: { peerId: string; capabilities: { device: string } }) => io.stdout(`join ${m.peerId} device=${m.capabilities.device}\n`));
  node.on('leave', (m: { peerId: string }, why: string) => io.stdout(`leave ${m.peerId} (${why})\n`));
  await node.start();
  io.stdout(`fmfl-node ${node.peerId} federation=${cfg.federation}\n`);
  for (const a of node.multiaddrs()) io.stdout(`listening ${a}\n`);
  if (node.http) {
    io.stdout(`dashboard ${node.http.url}/\n`);
    if (node.inference) io.stdout(`predict ${node.http.url}/predict\n`);
  }
  const shutdown = (io.shutdown ?? waitForSignal)();
  let why: string;
  if (federate) {
    try {
      const res = await runFederation(node, cfg.fl ?? {}, io, shutdown, { metrics: flags.metrics, progress: flags.progress });
      why = res.stoppedBy ?? `${res.rounds.length} rounds done`;
    } catch (err) {
      await node.stop();
      throw err;
    }
  } else {
    why = await shutdown;
  }
  io.stdout(`shutting down (${why})\n`);
  await node.stop();
  return 0;
}

/** Parse --http-port. */
function port(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 65535) throw new FmflError('CONFIG', `--http-port must be a port number 0..65535, got "${value}"`);
  return Number(value);
}

/** Error codes that are the user's input to fix (exit 2): configuration, data folders and files, backbone names. */
const USER_ERROR_CODES = new Set(['CONFIG', 'DATASET', 'BACKBONE', 'ONNX_IMPORT']);

/**
 * The `fmfl-node` command line. Returns the process exit code: 0 ok, 1 runtime failure, 2 usage or
 * configuration error. Never calls process.exit.
 */
export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  let code = 0;
  const program = new Command('fmfl-node')
    .description('Peer-to-peer federated-learning mesh node. Without a command: run a node (add --data/--rounds/--config to federate).')
    .usage('[options]  |  fmfl-node <command> [options]')
    .exitOverride()
    .enablePositionalOptions()
    .allowExcessArguments(true)
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError(false)
    .version(FMFL_VERSION, '-V, --version', 'print the fmfl version')
    .optionsGroup('Mesh:')
    .addOption(new Option('--listen <multiaddr,...>', 'listen multiaddrs (default /ip4/127.0.0.1/tcp/0)').argParser(list))
    .addOption(new Option('--peers <multiaddr,...>', 'peers to dial (full multiaddrs with /p2p/<id>); redialled with backoff').argParser(list))
    .addOption(new Option('--bootstrap <multiaddr,...>', 'bootstrap peers (@libp2p/bootstrap; full multiaddrs with /p2p/<id>): dialled at start, redialled with backoff').argParser(list))
    .option('--mdns', 'find peers on the local network by multicast DNS (@libp2p/mdns); the swarm key and --allow still apply')
    .option('--state-dir <dir>', `state folder: identity.key, peers.json (default ${DEFAULT_STATE_DIR})`)
    .option('--federation <name>', 'federation name; namespaces all topics and protocols (default "default")')
    .option('--config <file>', 'JSON node profile (see nodes/); flags override it')
    .option('--swarm-key <file>', 'private-network pre-shared key: peers without it cannot connect')
    .addOption(new Option('--allow <peerId,...>', 'only these peers may connect (connection gater); also the roster unless --roster is given').argParser(list))
    .option('--roster <file>', "the federation's members (JSON array or one PeerId a line): gossip signed by anyone else is rejected, rounds count only them")
    .addOption(new Option('--heartbeat-ms <ms>', 'membership heartbeat interval (default 2000)').argParser(int('--heartbeat-ms')))
    .addOption(new Option('--expiry-ms <ms>', 'membership expiry (default 10000)').argParser(int('--expiry-ms')));
  addSchemaOptions(program, NODE_KNOBS, NODE_KNOB_DEFAULTS);
  program
    .optionsGroup('Dashboard, status and serving:')
    .addOption(new Option('--http-port <port>', 'HTTP server: dashboard /, /status, /metrics (and /predict with --checkpoint); 0: any free port').argParser(port))
    .option('--http-host <host>', 'host of the HTTP server (default 127.0.0.1: this machine only)')
    .option('--checkpoint <file>', 'serve predictions with this model checkpoint (infer protocol; see fmfl-node infer)')
    .optionsGroup('Logging:')
    .addOption(new Option('--log-level <level>', 'log level (default info)').choices(LOG_LEVELS))
    .option('--json-logs', 'JSON log lines on stderr')
    .optionsGroup('Federated training (any of these flags or an "fl" profile starts it; the same keys go in a profile\'s "fl" object):');
  addFederationOptions(program);
  program
    .optionsGroup('Help:')
    .helpOption('-h, --help', 'show this help (fmfl-node help <command>: help of a command)')
    .helpCommand('help [command]', 'show the help of a command')
    .commandsGroup('Commands:')
    .addHelpText('after', EXAMPLES)
    .action(async (flags: RunFlags, cmd: Command) => {
      if (cmd.args.length > 0) {
        io.stderr(`fmfl-node: unknown command "${cmd.args[0]}"; commands: ${program.commands.map((c) => c.name()).join(', ')}, help (see fmfl-node --help)\n`);
        code = 2;
        return;
      }
      code = await runNode(flags, cmd, io);
    });

  registerInferCommand(program, io, (c) => (code = c));
  registerImportModelCommand(program, io, (c) => (code = c));

  program
    .command('status')
    .description('show a running node\'s view of its federation as tables: members, round, leader, bytes (reads its /status)')
    .option('--http <url>', `the node's HTTP server, as printed at its start (default http://${DEFAULT_STATUS_HOST}:${DEFAULT_STATUS_PORT})`)
    .option('--json', 'print the /status document as JSON instead')
    .action(async (flags: { http?: string; json?: boolean }) => {
      const doc = await fetchStatus(flags.http ?? `http://${DEFAULT_STATUS_HOST}:${DEFAULT_STATUS_PORT}`);
      io.stdout(flags.json ? `${JSON.stringify(doc, null, 2)}\n` : formatStatus(doc));
    });

  program
    .command('id')
    .description('print the node identity (PeerId), creating it in the state folder if needed')
    .option('--state-dir <dir>', `state folder (default ${DEFAULT_STATE_DIR})`)
    .action(async (flags: { stateDir?: string }) => {
      const id = await loadOrCreateIdentity(flags.stateDir ?? DEFAULT_STATE_DIR);
      io.stdout(`${id.peerId.toString()}\n`);
    });

  program
    .command('swarm-key')
    .description('write a new random private-network swarm key to <file> (refuses to replace an existing file)')
    .argument('<file>', 'where to write the key (mode 0600)')
    .option('--force', 'replace an existing file (every member then needs the new key)')
    .action(async (file: string, flags: { force?: boolean }) => {
      if (!flags.force && existsSync(file)) throw new FmflError('CONFIG', `${file} exists; pass --force to replace it (every member of the federation then needs the new key)`);
      await writeSwarmKey(file);
      io.stdout(`wrote swarm key ${file}\n`);
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof FmflError) {
      io.stderr(`fmfl-node: ${err.message}\n`);
      return USER_ERROR_CODES.has(err.code) || err.code.startsWith('MESH_BAD') ? 2 : 1;
    }
    io.stderr(`fmfl-node: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}
