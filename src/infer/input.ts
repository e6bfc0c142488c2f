/**
 * Inputs of inference: PNG images (8-bit greyscale, grey+alpha, RGB or RGBA, non-interlaced, decoded with
 * node:zlib) and JSON pixel arrays, both turned into 28x28 uint8 greyscale and then into the model's
 * normalized float layout.
 */
import { crc32, inflateSync } from 'node:zlib';
import { IMAGE_PIXELS, IMAGE_SIZE, PIXEL_MEAN, PIXEL_STD } from '../data/index.ts';
import { InferError } from './errors.ts';

/** Largest PNG file accepted (bytes). A 28x28 RGBA PNG is well under 4 KiB. */
export const MAX_PNG_BYTES = 1024 * 1024;
/** Largest decompressed PNG image data accepted (bytes): refuses decompression bombs before inflating further. */
export const MAX_PNG_RAW_BYTES = 4 * 1024 * 1024;
/** Most images in one JSON input. */
export const MAX_JSON_IMAGES = 1024;

const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

function bad(msg: string): never {
  throw new InferError('BAD_INPUT', msg);
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** A decoded PNG: width, height, channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) and 8-bit samples. */
export interface DecodedPng {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
}

/**
 * Decode an 8-bit, non-interlaced PNG (colour types 0, 2, 4, 6): chunks are walked, length- and CRC-checked, IDAT
 * data concatenated, inflated with a size cap, and the five scanline filters undone.
 * @throws InferError('BAD_INPUT') on anything else, with a message naming what is unsupported.
 */
export function decodePng(bytes: Uint8Array): DecodedPng {
  if (bytes.length > MAX_PNG_BYTES) bad(`PNG is ${bytes.length} bytes, over the ${MAX_PNG_BYTES}-byte limit`);
  if (bytes.length < 8 || PNG_SIGNATURE.some((v, i) => bytes[i] !== v)) bad('not a PNG file (bad signature)');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 8;
  let ihdr: { w: number; h: number; depth: number; color: number; interlace: number } | null = null;
  const idat: Uint8Array[] = [];
  let ended = false;
  while (off + 8 <= bytes.length) {
    const len = dv.getUint32(off);
    const type = String.fromCharCode(bytes[off + 4], bytes[off + 5], bytes[off + 6], bytes[off + 7]);
    if (off + 12 + len > bytes.length) bad(`PNG chunk ${type} runs past the end of the file (truncated?)`);
    const body = bytes.subarray(off + 8, off + 8 + len);
    if (crc32(bytes.subarray(off + 4, off + 8 + len)) !== dv.getUint32(off + 8 + len)) bad(`PNG chunk ${type} fails its CRC check (corrupt file)`);
    if (type === 'IHDR') {
      if (len !== 13) bad('PNG IHDR chunk has the wrong length');
      ihdr = { w: dv.getUint32(off + 8), h: dv.getUint32(off + 12), depth: body[8], color: body[9], interlace: body[12] };
    } else if (type === 'IDAT') idat.push(body);
    else if (type === 'IEND') {
      ended = true;
      break;
    } else if (type === 'PLTE') bad('palette PNGs are not supported; save the image as 8-bit greyscale or RGB');
    off += 12 + len;
  }
  if (!ihdr) bad('PNG has no IHDR chunk');
  if (!ended) bad('PNG has no IEND chunk (truncated?)');
  const { w, h, depth, color, interlace } = ihdr;
  if (depth !== 8) bad(`PNG bit depth ${depth} is not supported; use 8-bit`);
  if (interlace !== 0) bad('interlaced PNGs are not supported');
  const channels = ({ 0: 1, 2: 3, 4: 2, 6: 4 } as Record<number, number>)[color];
  if (channels === undefined) bad(`PNG colour type ${color} is not supported; use greyscale, RGB or RGBA`);
  if (w < 1 || h < 1 || w * h * channels > MAX_PNG_RAW_BYTES) bad(`PNG of ${w}x${h} is too large`);
  const stride = w * channels;
  const rawLen = h * (stride + 1);
  let raw: Buffer;
  try {
    raw = inflateSync(Buffer.concat(idat), { maxOutputLength: rawLen + 1 });
  } catch (err) {
    bad(`PNG image data does not inflate: ${(err as Error).message}`);
  }
  if (raw.length !== rawLen) bad(`PNG image data holds ${raw.length} bytes, ${w}x${h} needs ${rawLen}`);
  const out = new Uint8Array(h * stride);
  for (let y = 0; y < h; y++) {
    const f = raw[y * (stride + 1)];
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    const prev = row - stride;
    for (let x = 0; x < stride; x++) {
      const v = raw[src + x];
      const a = x >= channels ? out[row + x - channels] : 0;
      const b = y > 0 ? out[prev + x] : 0;
      const c = x >= channels && y > 0 ? out[prev + x - channels] : 0;
      let r: number;
      switch (f) {
        case 0: r = v; break;
        case 1: r = v + a; break;
        case 2: r = v + b; break;
        case 3: r = v + ((a + b) >> 1); break;
        case 4: r = v + paeth(a, b, c); break;
        default: bad(`PNG row ${y} has unknown filter type ${f}`);
      }
      out[row + x] = r & 0xff;
    }
  }
  return { width: w, height: h, channels, data: out };
}

/**
 * A 28x28 PNG as 784 greyscale bytes: RGB is converted with ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B);
 * alpha is composited over black (Fashion-MNIST's background). Other sizes are refused (no resizing).
 */
export function pngToGrey(bytes: Uint8Array): Uint8Array {
  const p = decodePng(bytes);
  if (p.width !== IMAGE_SIZE || p.height !== IMAGE_SIZE) bad(`the image is ${p.width}x${p.height}; the model takes ${IMAGE_SIZE}x${IMAGE_SIZE} (resize it first)`);
  const out = new Uint8Array(IMAGE_PIXELS);
  for (let i = 0; i < IMAGE_PIXELS; i++) {
    const s = i * p.channels;
    let g: number;
    let alpha = 255;
    if (p.channels <= 2) {
      g = p.data[s];
      if (p.channels === 2) alpha = p.data[s + 1];
    } else {
      g = 0.299 * p.data[s] + 0.587 * p.data[s + 1] + 0.114 * p.data[s + 2];
      if (p.channels === 4) alpha = p.data[s + 3];
    }
    out[i] = Math.round((g * alpha) / 255);
  }
  return out;
}

/**
 * Parse JSON input: `{"pixels": [784 numbers 0..255]}`, a list of such objects, or `{"images": [[784], ...]}`.
 * Returns one 784-byte greyscale image per entry.
 * @throws InferError('BAD_INPUT') naming the first problem.
 */
export function parseJsonImages(value: unknown): Uint8Array[] {
  let list: unknown[];
  if (Array.isArray(value)) list = value.map((v) => (v && typeof v === 'object' && !Array.isArray(v) ? (v as { pixels?: unknown }).pixels : v));
  else if (value && typeof value === 'object' && Array.isArray((value as { pixels?: unknown }).pixels)) list = [(value as { pixels: unknown }).pixels];
  else if (value && typeof value === 'object' && Array.isArray((value as { images?: unknown }).images)) list = (value as { images: unknown[] }).images;
  else bad('JSON input must be {"pixels":[784 numbers 0..255]}, a list of those, or {"images":[[...784], ...]}');
  if (list.length === 0) bad('JSON input holds no image');
  if (list.length > MAX_JSON_IMAGES) bad(`JSON input holds ${list.length} images, over the limit of ${MAX_JSON_IMAGES}`);
  return list.map((px, i) => {
    if (!Array.isArray(px)) bad(`image ${i}: pixels must be an array of ${IMAGE_PIXELS} numbers`);
    if (px.length !== IMAGE_PIXELS) bad(`image ${i}: has ${px.length} pixels, the model takes ${IMAGE_PIXELS} (28x28 greyscale, row-major)`);
    const out = new Uint8Array(IMAGE_PIXELS);
    for (let k = 0; k < IMAGE_PIXELS; k++) {
      const v = px[k];
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 255) bad(`image ${i}: pixel ${k} is ${JSON.stringify(v)}, expected a number in 0..255`);
      out[k] = Math.round(v);
    }
    return out;
  });
}

/** Detect and parse an input file's bytes: PNG by signature, else JSON. */
export function parseInputBytes(bytes: Uint8Array): Uint8Array[] {
  if (bytes.length >= 8 && PNG_SIGNATURE.every((v, i) => bytes[i] === v)) return [pngToGrey(bytes)];
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    bad('the input is neither a PNG nor valid JSON');
  }
  return parseJsonImages(v);
}

/** Normalize greyscale images into the model's float layout [n, 1, 28, 28] ((v / 255 - 0.5) / 0.5). */
export function normalizeImages(images: readonly Uint8Array[]): Float32Array {
  const out = new Float32Array(images.length * IMAGE_PIXELS);
  images.forEach((img, i) => {
    for (let k = 0; k < IMAGE_PIXELS; k++) out[i * IMAGE_PIXELS + k] = (img[k] / 255 - PIXEL_MEAN) / PIXEL_STD;
  });
  return out;
}
