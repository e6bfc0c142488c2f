/**
 * Bodies of `POST /predict`: the JSON batch (the CLI's input format), one raw image file (`Content-Type:
 * image/png`, `image/jpeg`, `image/webp`, `image/tiff`, `application/dicom`), or `multipart/form-data` with one or
 * more image files and optional option fields. Every body is size-capped while it arrives, before any parsing;
 * images are decoded by the data layer (sharp, the same rules as training data) to the model's input spec.
 * Multipart is parsed by Node's own fetch implementation (undici's `Request.formData()`), no extra dependency.
 */
import type { IncomingMessage } from 'node:http';
import { decodeImage, sniffImageFormat, type ImageFormat, type InputSpec } from '../data/index.ts';
import { MAX_INFER_BATCH } from './anytime.ts';
import { MAX_IMAGE_INPUT_BYTES } from './input.ts';

/** Largest JSON body (a 64-image JSON batch is ~250 KB). */
export const MAX_HTTP_BODY_BYTES = 1024 * 1024;
/** Largest raw-image or multipart body: one 16 MiB image file (`MAX_IMAGE_INPUT_BYTES`) plus the multipart framing. */
export const MAX_HTTP_UPLOAD_BYTES = MAX_IMAGE_INPUT_BYTES + 64 * 1024;
/** Most parts (files and fields) in one multipart body. */
export const MAX_MULTIPART_PARTS = MAX_INFER_BATCH + 16;
/** Longest text field of a multipart body (option values are short). */
export const MAX_MULTIPART_FIELD_CHARS = 64;

/** Option names a request may carry in a JSON body, a multipart field or the query string. */
export const PREDICT_OPTION_KEYS = ['exit', 'budgetMs', 'mode', 'peersK', 'deadlineMs', 'combine'] as const;
const NUMERIC_OPTIONS = new Set(['budgetMs', 'peersK', 'deadlineMs']);

/** Raw image media types and the format their bytes must have. */
export const IMAGE_MEDIA_TYPES: Readonly<Record<string, ImageFormat>> = Object.freeze({
  'image/png': 'png',
  'image/jpeg': 'jpeg',
  'image/jpg': 'jpeg',
  'image/webp': 'webp',
  'image/tiff': 'tiff',
  'application/dicom': 'dicom',
});
/** Part types of a multipart file whose bytes decide the format (clients often send these for any file). */
const GENERIC_PART_TYPES = new Set(['', 'application/octet-stream']);
const ACCEPTED = 'application/json, image/png, image/jpeg, image/webp, image/tiff, application/dicom or multipart/form-data';

/** Why an HTTP prediction request was refused: HTTP status plus a stable code. */
export type PredictHttpCode =
  /** Body is not valid JSON. */
  | 'BAD_JSON'
  /** The multipart body cannot be parsed, has no file, too many parts, or an unknown / overlong field. */
  | 'BAD_MULTIPART'
  /** An image file cannot be decoded (corrupt, truncated, not an image). */
  | 'UNDECODABLE'
  /** Content-Type (of the body or of a multipart file) is not one the endpoint takes, or does not match the bytes. */
  | 'MEDIA_TYPE'
  /** Body or file over its size limit. */
  | 'TOO_LARGE'
  /** The JSON input or an option is malformed or out of range. */
  | 'BAD_INPUT'
  | 'BAD_OPTION'
  | 'METHOD'
  | 'NOT_FOUND'
  | 'BUSY';

/** A refused HTTP prediction request; answered as `{"error":{"code","message"}}` with `status`. */
export class PredictHttpError extends Error {
  constructor(readonly status: number, readonly code: PredictHttpCode, message: string) {
    super(message);
    this.name = 'PredictHttpError';
  }
}

/** Read a request body, refusing (413) as soon as it passes `max` bytes (or its Content-Length says it will). */
export async function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  const tooLarge = (): PredictHttpError => new PredictHttpError(413, 'TOO_LARGE', `the body is over the ${max}-byte limit of this content type`);
  if (Number.isFinite(declared) && declared > max) throw tooLarge();
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > max) throw tooLarge();
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** One uploaded image file, decoded. */
export interface UploadedImage {
  /** Planar uint8 pixels of the model's input spec. */
  pixels: Uint8Array;
  /** File name of a multipart part, else null. */
  file: string | null;
}

/** What a prediction request holds before its options are validated. */
export interface RawPredictRequest {
  /** Decoded images (raw / multipart bodies), or null for a JSON body (its images are in `json`). */
  images: UploadedImage[] | null;
  /** The parsed JSON object (JSON bodies), or the options from fields / query string. */
  json: unknown;
}

/** The media type of a Content-Type header, lower case, without parameters. */
export function mediaType(contentType: string | undefined): string {
  return String(contentType ?? '').split(';')[0].trim().toLowerCase();
}

async function decodeUpload(bytes: Uint8Array, declared: string, file: string | null, spec: Pick<InputSpec, 'size' | 'channels'>): Promise<UploadedImage> {
  const what = file === null ? 'the body' : `file "${file}"`;
  if (bytes.length > MAX_IMAGE_INPUT_BYTES) throw new PredictHttpError(413, 'TOO_LARGE', `${what} is ${bytes.length} bytes, over the ${MAX_IMAGE_INPUT_BYTES}-byte image limit`);
  if (bytes.length === 0) throw new PredictHttpError(400, 'UNDECODABLE', `${what} is empty`);
  const sniffed = sniffImageFormat(bytes);
  const want = IMAGE_MEDIA_TYPES[declared];
  if (want === undefined && !GENERIC_PART_TYPES.has(declared)) throw new PredictHttpError(415, 'MEDIA_TYPE', `${what} has type ${declared}; send ${Object.keys(IMAGE_MEDIA_TYPES).join(', ')}`);
  if (sniffed === null) throw new PredictHttpError(400, 'UNDECODABLE', `${what} is not a PNG, JPEG, WebP, TIFF or DICOM file`);
  if (want !== undefined && want !== sniffed) throw new PredictHttpError(415, 'MEDIA_TYPE', `${what} is declared ${declared} but holds a ${sniffed.toUpperCase()} file; fix the Content-Type`);
  try {
    return { pixels: await decodeImage(bytes, file ?? 'upload', { size: spec.size, channels: spec.channels }), file };
  } catch (err) {
    throw new PredictHttpError(400, 'UNDECODABLE', (err as Error).message);
  }
}

/** Options from the query string (`?exit=2&mode=head`), numbers parsed; unknown keys refused. */
export function queryOptions(url: string | undefined): Record<string, unknown> {
  const q = new URL(url ?? '/', 'http://localhost').searchParams;
  const out: Record<string, unknown> = {};
  for (const [k, v] of q) setOption(out, k, v, 'query parameter', 'BAD_OPTION');
  return out;
}

function setOption(out: Record<string, unknown>, k: string, v: string, where: string, code: PredictHttpCode): void {
  if (!(PREDICT_OPTION_KEYS as readonly string[]).includes(k)) throw new PredictHttpError(400, code, `unknown ${where} "${k.slice(0, 64)}"; options are ${PREDICT_OPTION_KEYS.join(', ')}`);
  if (v.length > MAX_MULTIPART_FIELD_CHARS) throw new PredictHttpError(400, code, `${where} "${k}" is longer than ${MAX_MULTIPART_FIELD_CHARS} characters`);
  const isNum = NUMERIC_OPTIONS.has(k) || (k === 'exit' && v !== 'auto');
  out[k] = isNum && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
}

/**
 * Read and parse the body of `POST /predict` by its Content-Type. JSON bodies are capped at `maxJsonBytes`, raw
 * images and multipart bodies at `maxUploadBytes`.
 * @throws PredictHttpError (413, 415, 400 BAD_JSON / BAD_MULTIPART / UNDECODABLE).
 */
export async function readPredictRequest(req: IncomingMessage, spec: Pick<InputSpec, 'size' | 'channels'>, maxJsonBytes = MAX_HTTP_BODY_BYTES, maxUploadBytes = MAX_HTTP_UPLOAD_BYTES): Promise<RawPredictRequest> {
  const type = mediaType(req.headers['content-type']);
  if (type === 'application/json') {
    const raw = await readBody(req, maxJsonBytes);
    try {
      return { images: null, json: JSON.parse(raw.toString('utf8')) };
    } catch {
      throw new PredictHttpError(400, 'BAD_JSON', 'body is not valid JSON');
    }
  }
  if (IMAGE_MEDIA_TYPES[type] !== undefined) {
    const opts = queryOptions(req.url);
    const raw = await readBody(req, maxUploadBytes);
    return { images: [await decodeUpload(raw, type, null, spec)], json: opts };
  }
  if (type === 'multipart/form-data') {
    const opts = queryOptions(req.url);
    if (!/;\s*boundary=/i.test(String(req.headers['content-type']))) throw new PredictHttpError(400, 'BAD_MULTIPART', 'multipart/form-data without a boundary parameter');
    const raw = await readBody(req, maxUploadBytes);
    let form: FormData;
    try {
      form = await new Request('http://localhost/', { method: 'POST', headers: { 'content-type': String(req.headers['content-type']) }, body: raw }).formData();
    } catch {
      throw new PredictHttpError(400, 'BAD_MULTIPART', 'the multipart body cannot be parsed (check the boundary and the part headers)');
    }
    const files: File[] = [];
    let parts = 0;
    for (const [name, value] of form) {
      if (++parts > MAX_MULTIPART_PARTS) throw new PredictHttpError(400, 'BAD_MULTIPART', `more than ${MAX_MULTIPART_PARTS} parts`);
      if (typeof value === 'string') setOption(opts, name, value, 'multipart field', 'BAD_MULTIPART');
      else files.push(value);
    }
    if (files.length === 0) throw new PredictHttpError(400, 'BAD_MULTIPART', 'the multipart body holds no file; send the image(s) as file parts (curl -F file=@shirt.png)');
    if (files.length > MAX_INFER_BATCH) throw new PredictHttpError(400, 'BAD_MULTIPART', `${files.length} files, at most ${MAX_INFER_BATCH} per request`);
    const images: UploadedImage[] = [];
    for (const f of files) images.push(await decodeUpload(new Uint8Array(await f.arrayBuffer()), mediaType(f.type), f.name || 'unnamed', spec));
    return { images, json: opts };
  }
  throw new PredictHttpError(415, 'MEDIA_TYPE', type === '' ? `no Content-Type; send ${ACCEPTED}` : `Content-Type ${type.slice(0, 64)} is not accepted; send ${ACCEPTED}`);
}
