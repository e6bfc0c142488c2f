/**
 * Inputs of inference: image files (PNG, JPEG, WebP, TIFF, DICOM: decoded, colour-converted and resized to the
 * model's input by the data layer's decodeImage, the same rules as training data) and JSON pixel arrays, both
 * turned into planar uint8 images of the model's input spec and then into its normalised float layout.
 */
import { decodeImage, MNIST_INPUT, normalizationTables, pixelsPerImage, sniffImageFormat, type InputSpec } from '../data/index.ts';
import { InferError } from './errors.ts';

/** Largest image file accepted for inference (bytes). */
export const MAX_IMAGE_INPUT_BYTES = 16 * 1024 * 1024;
/** @deprecated name of {@link MAX_IMAGE_INPUT_BYTES}, kept for the CLI's file-size check. */
export const MAX_PNG_BYTES = MAX_IMAGE_INPUT_BYTES;
/** Most images in one JSON input. */
export const MAX_JSON_IMAGES = 1024;

function bad(msg: string): never {
  throw new InferError('BAD_INPUT', msg);
}

/**
 * Decode one image file (any format the data layer reads, detected from its bytes) into the model's input: square
 * `spec.size`, `spec.channels` planes, uint8.
 * @throws InferError('BAD_INPUT') with the decoder's reason.
 */
export async function decodeInputImage(bytes: Uint8Array, spec: Pick<InputSpec, 'size' | 'channels'> = MNIST_INPUT, name = 'input'): Promise<Uint8Array> {
  if (bytes.length > MAX_IMAGE_INPUT_BYTES) bad(`the image is ${bytes.length} bytes, over the ${MAX_IMAGE_INPUT_BYTES}-byte limit`);
  try {
    return await decodeImage(bytes, name, { size: spec.size, channels: spec.channels });
  } catch (err) {
    bad((err as Error).message);
  }
}

/**
 * Parse JSON input: `{"pixels": [P numbers 0..255]}`, a list of such objects, or `{"images": [[P], ...]}`, where
 * P = channels x size x size of the model (784 for the 28x28 greyscale backbones; planar, row-major).
 * Returns one P-byte image per entry.
 * @throws InferError('BAD_INPUT') naming the first problem.
 */
export function parseJsonImages(value: unknown, spec: Pick<InputSpec, 'size' | 'channels'> = MNIST_INPUT): Uint8Array[] {
  const IMAGE_PIXELS = pixelsPerImage(spec);
  let list: unknown[];
  if (Array.isArray(value)) list = value.map((v) => (v && typeof v === 'object' && !Array.isArray(v) ? (v as { pixels?: unknown }).pixels : v));
  else if (value && typeof value === 'object' && Array.isArray((value as { pixels?: unknown }).pixels)) list = [(value as { pixels: unknown }).pixels];
  else if (value && typeof value === 'object' && Array.isArray((value as { images?: unknown }).images)) list = (value as { images: unknown[] }).images;
  else bad(`JSON input must be {"pixels":[${IMAGE_PIXELS} numbers 0..255]}, a list of those, or {"images":[[...${IMAGE_PIXELS}], ...]}`);
  if (list.length === 0) bad('JSON input holds no image');
  if (list.length > MAX_JSON_IMAGES) bad(`JSON input holds ${list.length} images, over the limit of ${MAX_JSON_IMAGES}`);
  return list.map((px, i) => {
    if (!Array.isArray(px)) bad(`image ${i}: pixels must be an array of ${IMAGE_PIXELS} numbers`);
    if (px.length !== IMAGE_PIXELS) bad(`image ${i}: has ${px.length} pixels, the model takes ${IMAGE_PIXELS} (${spec.size}x${spec.size}, ${spec.channels} channel${spec.channels > 1 ? 's, planar' : ''}, row-major)`);
    const out = new Uint8Array(IMAGE_PIXELS);
    for (let k = 0; k < IMAGE_PIXELS; k++) {
      const v = px[k];
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 255) bad(`image ${i}: pixel ${k} is ${JSON.stringify(v)}, expected a number in 0..255`);
      out[k] = Math.round(v);
    }
    return out;
  });
}

/** Detect and parse an input file's bytes: an image by its signature (PNG, JPEG, WebP, TIFF, DICOM), else JSON. */
export async function parseInputBytes(bytes: Uint8Array, spec: Pick<InputSpec, 'size' | 'channels'> = MNIST_INPUT): Promise<Uint8Array[]> {
  if (sniffImageFormat(bytes) !== null) return [await decodeInputImage(bytes, spec)];
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    bad('the input is neither an image file (png, jpg, webp, tif, dcm) nor valid JSON');
  }
  return parseJsonImages(v, spec);
}

/**
 * Normalise images into the model's float layout [n, C, S, S]: (v / 255 - mean[c]) / std[c] per channel (the
 * backbone's input spec; default the bundled backbones' mean 0.5, std 0.5), exactly as training batches are.
 */
export function normalizeImages(images: readonly Uint8Array[], spec: InputSpec = MNIST_INPUT): Float32Array {
  const plane = spec.size * spec.size;
  const P = spec.channels * plane;
  const luts = normalizationTables(spec, spec.channels);
  const out = new Float32Array(images.length * P);
  images.forEach((img, i) => {
    if (img.length !== P) bad(`image ${i} holds ${img.length} values, the model takes ${P}`);
    for (let c = 0; c < spec.channels; c++) {
      const lut = luts[c];
      const base = i * P + c * plane;
      for (let k = 0; k < plane; k++) out[base + k] = lut[img[c * plane + k]];
    }
  });
  return out;
}
