/**
 * HTTP JSON prediction endpoint of a node (node:http): `POST /predict`, `GET /healthz`. Bound to 127.0.0.1 by
 * default; bodies are size-capped before parsing; concurrency is capped (503 when busy).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../util/log.ts';
import { MAX_INFER_BATCH, PREDICT_MODES, type AnytimeModel, type PredictMode } from './anytime.ts';
import { COMBINE_RULES, type CombineRule } from './combine.ts';
import { InferError } from './errors.ts';
import { decodeInputImage, normalizeImages, parseJsonImages } from './input.ts';
import { MAX_HTTP_BODY_BYTES, MAX_HTTP_UPLOAD_BYTES, PredictHttpError as HttpError, readPredictRequest, type UploadedImage } from './http-body.ts';

export { MAX_HTTP_BODY_BYTES, MAX_HTTP_UPLOAD_BYTES, PredictHttpError } from './http-body.ts';
import { MAX_DEADLINE_MS, MAX_INFER_IMAGES, MAX_PEERS_K, MIN_DEADLINE_MS } from './limits.ts';
import type { InferService } from './service.ts';

/** Default listen host: loopback only. */
export const DEFAULT_HTTP_HOST = '127.0.0.1';
/** Default port of the prediction endpoint. */
export const DEFAULT_HTTP_PORT = 8470;
/** Requests handled at once before answering 503. */
export const MAX_HTTP_CONCURRENT = 8;
/** Longest a request may take to arrive (ms). */
export const HTTP_REQUEST_TIMEOUT_MS = 10_000;

/** Options of {@link startPredictServer}. */
export interface PredictServerOptions {
  model: AnytimeModel;
  /** Collaborative prediction (`peersK` in requests) when given. */
  service?: InferService | null;
  host?: string;
  /** Port (0 = any free port; default DEFAULT_HTTP_PORT). */
  port?: number;
  /** Largest JSON body (default MAX_HTTP_BODY_BYTES). */
  maxBodyBytes?: number;
  /** Largest raw-image or multipart body (default MAX_HTTP_UPLOAD_BYTES). */
  maxUploadBytes?: number;
  maxConcurrent?: number;
  logger?: Logger;
}

/** A running prediction server. */
export interface PredictServer {
  /** Base URL, e.g. http://127.0.0.1:8470. */
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const s = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(s), 'cache-control': 'no-store' });
  res.end(s);
}

const round = (x: number): number => Math.round(x * 1e6) / 1e6;

/** Parsed body of POST /predict. */
interface PredictBody {
  images: Uint8Array[];
  /** File names of multipart uploads (null entries otherwise). */
  files: (string | null)[];
  exit?: number | 'auto';
  budgetMs?: number;
  mode: PredictMode;
  peersK: number;
  deadlineMs?: number;
  combine: CombineRule;
}

async function jsonImages(o: Record<string, unknown>, model: AnytimeModel): Promise<Uint8Array[]> {
  const b64 = typeof o.png === 'string' ? o.png : typeof o.image === 'string' ? o.image : null;
  if (b64 === null) return parseJsonImages(o.images !== undefined ? { images: o.images } : { pixels: o.pixels }, model.input);
  // Any image format the data layer reads (PNG, JPEG, WebP, TIFF, DICOM), base64, resized to the model's input.
  if (b64.length > MAX_HTTP_BODY_BYTES) throw new HttpError(413, 'TOO_LARGE', 'base64 image too large');
  try {
    return [await decodeInputImage(new Uint8Array(Buffer.from(b64, 'base64')), model.input)];
  } catch (err) {
    throw new HttpError(400, 'UNDECODABLE', (err as Error).message);
  }
}

async function parsePredictBody(v: unknown, uploads: UploadedImage[] | null, model: AnytimeModel): Promise<PredictBody> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new HttpError(400, 'BAD_INPUT', 'body must be a JSON object');
  const o = v as Record<string, unknown>;
  const images = uploads ? uploads.map((u) => u.pixels) : await jsonImages(o, model);
  const files = uploads ? uploads.map((u) => u.file) : images.map(() => null);
  const bad = (m: string): never => {
    throw new HttpError(400, 'BAD_OPTION', m);
  };
  let exit: number | 'auto' | undefined;
  if (o.exit === 'auto') exit = 'auto';
  else if (o.exit !== undefined) {
    if (!Number.isInteger(o.exit) || (o.exit as number) < 1 || (o.exit as number) > model.exits) bad(`exit must be 1..${model.exits} or "auto"`);
    exit = (o.exit as number) - 1;
  }
  if (o.budgetMs !== undefined && !(typeof o.budgetMs === 'number' && o.budgetMs > 0 && o.budgetMs <= MAX_DEADLINE_MS)) bad(`budgetMs must be in (0, ${MAX_DEADLINE_MS}]`);
  const mode = (o.mode ?? 'head') as PredictMode;
  if (!PREDICT_MODES.includes(mode)) bad(`mode must be one of ${PREDICT_MODES.join(', ')}`);
  const peersK = o.peersK ?? 0;
  if (!Number.isInteger(peersK) || (peersK as number) < 0 || (peersK as number) > MAX_PEERS_K) bad(`peersK must be 0..${MAX_PEERS_K}`);
  if (o.deadlineMs !== undefined && !(typeof o.deadlineMs === 'number' && o.deadlineMs >= MIN_DEADLINE_MS && o.deadlineMs <= MAX_DEADLINE_MS)) bad(`deadlineMs must be in ${MIN_DEADLINE_MS}..${MAX_DEADLINE_MS}`);
  const combine = (o.combine ?? 'mean') as CombineRule;
  if (!COMBINE_RULES.includes(combine)) bad(`combine must be one of ${COMBINE_RULES.join(', ')}`);
  if ((peersK as number) > 0 && images.length > MAX_INFER_IMAGES) bad(`collaborative prediction takes at most ${MAX_INFER_IMAGES} images`);
  if (images.length > MAX_INFER_BATCH) bad(`at most ${MAX_INFER_BATCH} images per request`);
  return { images, files, exit, budgetMs: o.budgetMs as number | undefined, mode, peersK: peersK as number, deadlineMs: o.deadlineMs as number | undefined, combine };
}

/**
 * Serve predictions of `model` over HTTP.
 *
 * `POST /predict` with `{"pixels":[784 numbers 0..255]}` (or `"images":[[...], ...]`, or `"png":"<base64>"`) and
 * optional `exit` (1-based or "auto"), `budgetMs`, `mode` (head | prototype | ensemble), `peersK`, `deadlineMs`,
 * `combine` (mean | confidence). Answers `{"predictions":[{"label","probs","exit"}], "modelVersion", ...}`;
 * errors are `{"error":{"code","message"}}` with 400, 404, 405, 413, 415 or 503.
 * `GET /healthz` answers the model version, exits and calibrated latency.
 */
export async function startPredictServer(o: PredictServerOptions): Promise<PredictServer> {
  const host = o.host ?? DEFAULT_HTTP_HOST;
  const port = o.port ?? DEFAULT_HTTP_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InferError('BAD_OPTION', 'HTTP port must be 0..65535');
  const server = createServer(predictRequestHandler(o));
  server.requestTimeout = HTTP_REQUEST_TIMEOUT_MS;
  server.headersTimeout = HTTP_REQUEST_TIMEOUT_MS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shown}:${addr.port}`,
    port: addr.port,
    server,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/**
 * The request handler behind {@link startPredictServer}: `POST /predict` and `GET /healthz` (anything else 404),
 * for mounting on another node:http server (the node's status server). Never throws; errors become JSON answers.
 */
export function predictRequestHandler(o: Omit<PredictServerOptions, 'host' | 'port'>): (req: IncomingMessage, res: ServerResponse) => void {
  const maxBody = o.maxBodyBytes ?? MAX_HTTP_BODY_BYTES;
  const maxUpload = o.maxUploadBytes ?? MAX_HTTP_UPLOAD_BYTES;
  const maxConcurrent = o.maxConcurrent ?? MAX_HTTP_CONCURRENT;
  let active = 0;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      if (req.method !== 'GET') throw new HttpError(405, 'METHOD', 'use GET');
      const m = o.model;
      send(res, 200, { ok: true, modelVersion: m.version, backbone: m.backboneName, exits: m.exits, latencyMs: m.latency, peers: o.service ? o.service.candidates().length : 0 });
      return;
    }
    if (path !== '/predict') throw new HttpError(404, 'NOT_FOUND', 'endpoints: POST /predict, GET /healthz');
    if (req.method !== 'POST') throw new HttpError(405, 'METHOD', 'use POST');
    if (active >= maxConcurrent) throw new HttpError(503, 'BUSY', `serving ${active} requests already; retry later`);
    active++;
    try {
      const raw = await readPredictRequest(req, o.model.input, maxBody, maxUpload);
      const b = await parsePredictBody(raw.json, raw.images, o.model);
      const className = (label: number): string | null => o.model.labels[label] ?? null;
      const file = (i: number): { file?: string } => (b.files[i] !== null ? { file: b.files[i]! } : {});
      const t0 = performance.now();
      if (b.peersK > 0) {
        if (!o.service) throw new HttpError(400, 'BAD_OPTION', 'this node does not run the mesh; peersK must be 0');
        const r = await o.service.collaborate(b.images, { k: b.peersK, deadlineMs: b.deadlineMs, combine: b.combine, local: { exit: b.exit, budgetMs: b.budgetMs, mode: b.mode } });
        send(res, 200, {
          predictions: r.probs.map((p, i) => ({ ...file(i), label: r.labels[i], className: className(r.labels[i]), probs: Array.from(p, round) })),
          modelVersion: o.model.version,
          combine: r.combine,
          local: r.local ? { exit: r.local.exit } : null,
          answers: r.answers.map((a) => ({ peer: a.peer, exit: a.exit, modelVersion: a.modelVersion, ms: round(a.ms) })),
          ignored: r.ignored,
          ms: round(performance.now() - t0),
        });
        return;
      }
      const { predictions, result } = await o.model.predict(normalizeImages(b.images, o.model.input), b.images.length, { exit: b.exit, budgetMs: b.budgetMs, mode: b.mode });
      send(res, 200, {
        predictions: predictions.map((p, i) => ({ ...file(i), label: p.label, className: className(p.label), probs: Array.from(p.probs, round), exit: p.exit + 1 })),
        modelVersion: o.model.version,
        backbone: o.model.backboneName,
        mode: b.mode,
        stoppedBy: result.stoppedBy,
        ms: round(performance.now() - t0),
      });
    } finally {
      active--;
    }
  };
  return (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (err instanceof HttpError) send(res, err.status, { error: { code: err.code, message: err.message } });
      else if (err instanceof InferError) send(res, 400, { error: { code: err.reason, message: err.message } });
      else {
        o.logger?.warn({ err: String(err) }, 'predict failed');
        send(res, 500, { error: { code: 'INTERNAL', message: 'prediction failed' } });
      }
      if (!req.complete) req.resume();
    });
  };
}
