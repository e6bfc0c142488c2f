/**
 * The node's HTTP status server (node:http, 127.0.0.1 by default): `GET /` the live dashboard, `GET /status` JSON,
 * `GET /events` server-sent status events, `GET /metrics` Prometheus text, and, on a node serving a model,
 * `POST /predict` and `GET /healthz` from src/infer/http.ts. Static files are read once at start from a fixed
 * table (no path from the request touches the file system); the chart library comes from node_modules/uplot.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../util/log.ts';
import { MAX_SSE_CLIENTS, SSE_INTERVAL_MS } from './limits.ts';
import type { FmflMetrics } from './metrics.ts';
import type { NodeStatus, StatusDocument } from './status.ts';

/** Default port of the status server (also where `fmfl-node status` looks). */
export const DEFAULT_STATUS_PORT = 8470;
/** Default host: loopback only. */
export const DEFAULT_STATUS_HOST = '127.0.0.1';
/** Longest a request may take to arrive (ms); /events streams stay open. */
export const STATUS_REQUEST_TIMEOUT_MS = 10_000;

/** Options of {@link startStatusServer}. */
export interface StatusServerOptions {
  status: NodeStatus;
  metrics: FmflMetrics;
  host?: string;
  /** Port (0: any free port; default DEFAULT_STATUS_PORT). */
  port?: number;
  /** Handler of `POST /predict` and `GET /healthz` when the node serves a model. */
  predict?: ((req: IncomingMessage, res: ServerResponse) => void) | null;
  logger?: Logger;
}

/** A running status server. */
export interface StatusServer {
  /** Base URL, e.g. http://127.0.0.1:8470. */
  url: string;
  port: number;
  close(): Promise<void>;
}

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

interface Asset {
  type: string;
  body: Buffer;
}

async function loadAssets(): Promise<Map<string, Asset>> {
  const uplotDir = dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  const table: [string, string, string][] = [
    ['/', join(here, 'dashboard', 'index.html'), 'text/html; charset=utf-8'],
    ['/dashboard.js', join(here, 'dashboard', 'dashboard.js'), 'text/javascript; charset=utf-8'],
    ['/dashboard.css', join(here, 'dashboard', 'dashboard.css'), 'text/css; charset=utf-8'],
    ['/vendor/uplot.js', join(uplotDir, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
    ['/vendor/uplot.css', join(uplotDir, 'uPlot.min.css'), 'text/css; charset=utf-8'],
  ];
  const out = new Map<string, Asset>();
  for (const [path, file, type] of table) out.set(path, { type, body: await readFile(file) });
  return out;
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
};

function json(res: ServerResponse, status: number, body: unknown): void {
  const s = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(s), 'cache-control': 'no-store', ...SECURITY_HEADERS });
  res.end(s);
}

function error(res: ServerResponse, status: number, code: string, message: string): void {
  json(res, status, { error: { code, message } });
}

/** Start the status server. Rejects when the port is taken (the message names the flag to change). */
export async function startStatusServer(o: StatusServerOptions): Promise<StatusServer> {
  const host = o.host ?? DEFAULT_STATUS_HOST;
  const port = o.port ?? DEFAULT_STATUS_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError('status server port must be 0..65535');
  const assets = await loadAssets();
  const clients = new Set<ServerResponse>();
  let timer: NodeJS.Timeout | undefined;
  let pushing = false;

  const push = async (): Promise<void> => {
    if (pushing || clients.size === 0) return;
    pushing = true;
    try {
      const doc: StatusDocument = await o.status.snapshot(0);
      const frame = `event: status\ndata: ${JSON.stringify(doc)}\n\n`;
      for (const c of clients) c.write(frame);
    } catch (err) {
      o.logger?.debug({ err: String(err) }, 'status event failed');
    } finally {
      pushing = false;
    }
  };

  const events = (req: IncomingMessage, res: ServerResponse): void => {
    if (clients.size >= MAX_SSE_CLIENTS) return error(res, 503, 'BUSY', `${MAX_SSE_CLIENTS} dashboards are connected already`);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', ...SECURITY_HEADERS });
    res.write(`retry: ${SSE_INTERVAL_MS * 2}\n\n`);
    clients.add(res);
    req.socket.setTimeout(0);
    const drop = (): void => {
      clients.delete(res);
      if (clients.size === 0 && timer) {
        clearInterval(timer);
        timer = undefined;
      }
    };
    req.on('close', drop);
    res.on('error', drop);
    if (!timer) {
      timer = setInterval(() => void push(), SSE_INTERVAL_MS);
      timer.unref();
    }
    // The first frame at once, from what is known (no wait for the member poll).
    res.write(`event: status\ndata: ${JSON.stringify(o.status.document())}\n\n`);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/predict' || path === '/healthz') {
      if (o.predict) return o.predict(req, res);
      if (path === '/predict') return error(res, 404, 'NO_MODEL', 'this node serves no model: start it with --checkpoint <file> to serve predictions');
      if (req.method !== 'GET') return error(res, 405, 'METHOD', 'use GET');
      const d = o.status.document();
      return json(res, 200, { ok: true, modelVersion: null, peer: d.node.id, members: d.members.length, round: d.federation?.round ?? null });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return error(res, 405, 'METHOD', 'use GET');
    }
    const asset = assets.get(path);
    if (asset) {
      res.writeHead(200, { 'content-type': asset.type, 'content-length': asset.body.byteLength, 'cache-control': 'no-cache', ...SECURITY_HEADERS });
      res.end(req.method === 'HEAD' ? undefined : asset.body);
      return;
    }
    if (path === '/status') return json(res, 200, await o.status.snapshot());
    if (path === '/events') return events(req, res);
    if (path === '/metrics') {
      const m = await o.metrics.text();
      res.writeHead(200, { 'content-type': m.contentType, 'content-length': Buffer.byteLength(m.body), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
      res.end(req.method === 'HEAD' ? undefined : m.body);
      return;
    }
    error(res, 404, 'NOT_FOUND', 'endpoints: GET / (dashboard), /status, /events, /metrics, /healthz; POST /predict');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      o.logger?.warn({ err: String(err) }, 'status request failed');
      if (res.headersSent) return void res.destroy();
      error(res, 500, 'INTERNAL', 'status request failed');
    });
  });
  server.requestTimeout = STATUS_REQUEST_TIMEOUT_MS;
  server.headersTimeout = STATUS_REQUEST_TIMEOUT_MS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE' ? new RangeError(`HTTP port ${port} on ${host} is in use: pick another --http-port (0: any free port)`) : err);
    });
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shown}:${addr.port}`,
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(timer);
        for (const c of clients) c.end();
        clients.clear();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
