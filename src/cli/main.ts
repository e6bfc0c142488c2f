import { Command, CommanderError, Option } from 'commander';
import { FmflNode } from '../node/fmfl-node.ts';
import { resolveNodeConfig, type NodeConfigInput } from '../node/config.ts';
import { loadOrCreateIdentity } from '../mesh/identity.ts';
import { writeSwarmKey } from '../mesh/swarm-key.ts';
import { readRosterFile } from '../mesh/roster.ts';
import { LOG_LEVELS } from '../util/log.ts';
import { FmflError } from '../util/errors.ts';
import { registerInferCommand } from '../infer/cli.ts';
import { addFederationOptions, flFlagsToConfig, runFederation, wantsFederation, type FlFlags } from './federate.ts';

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

function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
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

/** Default state directory of the CLI (relative to the working directory). */
export const DEFAULT_STATE_DIR = '.fmfl';

async function runNode(flags: RunFlags, io: CliIo): Promise<number> {
  const overrides: NodeConfigInput = {
    listen: flags.listen,
    peers: flags.peers,
    stateDir: flags.stateDir,
    federation: flags.federation,
    swarmKey: flags.swarmKey,
    allow: flags.allow,
    roster: flags.roster !== undefined ? await readRosterFile(flags.roster) : undefined,
    logLevel: flags.logLevel as NodeConfigInput['logLevel'],
    jsonLogs: flags.jsonLogs,
    heartbeatIntervalMs: flags.heartbeatMs,
    memberExpiryMs: flags.expiryMs,
  };
  if (flags.checkpoint !== undefined) overrides.infer = { checkpoint: flags.checkpoint, httpPort: flags.httpPort, httpHost: flags.httpHost ?? '127.0.0.1' };
  else if (flags.httpPort !== undefined) throw new FmflError('CONFIG', '--http-port needs --checkpoint (the model to serve)');
  const flOver = flFlagsToConfig(flags);
  if (Object.keys(flOver).length > 0) overrides.fl = flOver;
  const cfg = await resolveNodeConfig({ file: flags.config, overrides });
  if (cfg.stateDir === undefined) cfg.stateDir = DEFAULT_STATE_DIR;
  const node = await FmflNode.create(cfg);
  node.on('join', (m: { peerId: string; capabilities: { device: string } }) => io.stdout(`join ${m.peerId} device=${m.capabilities.device}\n`));
  node.on('leave', (m: { peerId: string }, why: string) => io.stdout(`leave ${m.peerId} (${why})\n`));
  await node.start();
  io.stdout(`fmfl-node ${node.peerId} federation=${cfg.federation}\n`);
  for (const a of node.multiaddrs()) io.stdout(`listening ${a}\n`);
  if (node.inference?.http) io.stdout(`predict ${node.inference.http.url}/predict\n`);
  const shutdown = (io.shutdown ?? waitForSignal)();
  let why: string;
  if (wantsFederation(flags, cfg.fl)) {
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

/**
 * The `fmfl-node` command line. Returns the process exit code: 0 ok, 1 runtime failure, 2 usage or
 * configuration error. Never calls process.exit.
 */
export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  let code = 0;
  const program = new Command('fmfl-node')
    .description('Peer-to-peer federated-learning mesh node')
    .exitOverride()
    .enablePositionalOptions()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError(false)
    .addOption(new Option('--listen <multiaddr,...>', 'listen multiaddrs (default /ip4/127.0.0.1/tcp/0)').argParser(list))
    .addOption(new Option('--peers <multiaddr,...>', 'peers to dial (full multiaddrs with /p2p/<id>); redialled with backoff').argParser(list))
    .option('--state-dir <dir>', `state folder: identity.key, peers.json (default ${DEFAULT_STATE_DIR})`)
    .option('--federation <name>', 'federation name; namespaces all topics and protocols (default "default")')
    .option('--config <file>', 'JSON node profile (see nodes/); flags override it')
    .option('--swarm-key <file>', 'private-network pre-shared key: peers without it cannot connect')
    .addOption(new Option('--allow <peerId,...>', 'only these peers may connect (connection gater); also the roster unless --roster is given').argParser(list))
    .option('--roster <file>', "the federation's members (JSON array or one PeerId a line): gossip signed by anyone else is rejected, rounds count only them")
    .addOption(new Option('--log-level <level>', 'log level (default info)').choices(LOG_LEVELS))
    .option('--json-logs', 'JSON log lines on stderr')
    .addOption(new Option('--heartbeat-ms <ms>', 'membership heartbeat interval (default 2000)').argParser(int('--heartbeat-ms')))
    .addOption(new Option('--expiry-ms <ms>', 'membership expiry (default 10000)').argParser(int('--expiry-ms')))
    .option('--checkpoint <file>', 'serve predictions with this model checkpoint (infer protocol; see fmfl-node infer)')
    .addOption(new Option('--http-port <port>', 'also serve POST /predict over HTTP on this port (0: any free port)').argParser(port))
    .option('--http-host <host>', 'host of the HTTP endpoint (default 127.0.0.1: this machine only)');
  addFederationOptions(program).action(async (flags: RunFlags) => {
      code = await runNode(flags, io);
    });

  registerInferCommand(program, io, (c) => (code = c));

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
    .description('write a new random private-network swarm key to <file>')
    .argument('<file>', 'where to write the key (mode 0600)')
    .action(async (file: string) => {
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
      return err.code === 'CONFIG' || err.code.startsWith('MESH_BAD') ? 2 : 1;
    }
    io.stderr(`fmfl-node: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}
