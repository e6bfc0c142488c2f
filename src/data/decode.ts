/**
 * Decoding of one image file into the model's input layout: uint8, planar CHW (`channels` planes of
 * `size x size`, row-major), the [B, C, H, W] layout of the model's input.
 *
 * Rules (also in protocols/LIMITS.md and the README):
 * - Format: the extension must be one of {@link IMAGE_EXTENSIONS} (or absent); the decoder is chosen from the
 *   file's magic bytes (a `.jpg` holding PNG data decodes as PNG). Anything else is an {@link ImageDecodeError}.
 * - PNG, JPEG, WebP, TIFF go through sharp (libvips): first page/frame only, EXIF orientation applied, alpha
 *   flattened onto black (pixel * alpha / max), a 16-bit image scaled to 8 bits by `v >> 8` (libvips's
 *   RGB16/GREY16 → sRGB conversion; other sample depths are refused), CMYK and other spaces to sRGB.
 * - Resize: none when the (oriented) image already is `size x size` (a 28x28 greyscale PNG decodes to its
 *   exact pixels); otherwise scale to cover `size x size` keeping the aspect ratio and crop the centre
 *   (sharp `fit: 'cover'`, `position: 'centre'`, Lanczos-3), as torchvision's `Resize(s)` + `CenterCrop(s)`.
 *   No stretching: a chest X-ray keeps its proportions; what is lost is the border of the longer side.
 * - Colour: `channels: 1` of an RGB image is libvips's sRGB → B_W: Rec. 709 luminance
 *   Y = 0.2126 R + 0.7152 G + 0.0722 B on linearised sRGB values, sRGB-encoded again (pure red → 127,
 *   green → 220, blue → 76; a grey pixel (v, v, v) → v exactly). `channels: 3` of a greyscale image
 *   replicates the grey value into R, G and B.
 * - DICOM (`dicom-parser`): see {@link decodeDicomGrey}.
 */
import { extname } from 'node:path';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import dicomParser from 'dicom-parser';
import type { DataSet } from 'dicom-parser';
import { DatasetError } from './types.ts';

/** File extensions (lower case, with the dot) that image-folder data may use. */
export const IMAGE_EXTENSIONS: readonly string[] = Object.freeze(['.png', '.jpg', '.jpeg', '.webp', '.tif', '.tiff', '.dcm']);
/** Largest image file decoded, in bytes (64 MiB); larger files are refused before parsing. */
export const MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024;
/** Most pixels (width x height) of one decoded image: 2^26 = 67,108,864 (8192 x 8192); sharp's `limitInputPixels`. */
export const MAX_INPUT_PIXELS = 2 ** 26;
/** Smallest square input side. */
export const MIN_INPUT_SIZE = 4;
/** Largest square input side. */
export const MAX_INPUT_SIZE = 512;
/** Version of the decode rules; part of every image-folder cache key (bump it when a rule changes). */
export const DECODE_RULES_VERSION = 1;

/** The model's input: square `size x size` images with `channels` planes. */
export interface DecodeSpec {
  /** Side in pixels, an integer in {@link MIN_INPUT_SIZE}..{@link MAX_INPUT_SIZE}. */
  size: number;
  /** 1 (greyscale) or 3 (RGB). */
  channels: 1 | 3;
}

/** An image file could not be decoded. The message names the file and says what to do about it. */
export class ImageDecodeError extends DatasetError {}

/** The formats fmfl decodes. */
export type ImageFormat = 'png' | 'jpeg' | 'webp' | 'tiff' | 'dicom';

/**
 * Check an input spec. @throws DatasetError (not an ImageDecodeError: the spec is the caller's) when `size` is
 * not an integer in 4..512 or `channels` is not 1 or 3.
 */
export function checkInputSpec(spec: DecodeSpec): void {
  const { size, channels } = spec ?? ({} as DecodeSpec);
  if (!Number.isInteger(size) || size < MIN_INPUT_SIZE || size > MAX_INPUT_SIZE) {
    throw new DatasetError(`image size must be an integer in ${MIN_INPUT_SIZE}..${MAX_INPUT_SIZE}, got ${String(size)}`);
  }
  if (channels !== 1 && channels !== 3) throw new DatasetError(`channels must be 1 or 3, got ${String(channels)}`);
}

/** The format announced by the first bytes of a file, or null. */
export function sniffImageFormat(b: Uint8Array): ImageFormat | null {
  const at = (o: number, ...v: number[]): boolean => b.length >= o + v.length && v.every((x, i) => b[o + i] === x);
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'png';
  if (at(0, 0xff, 0xd8, 0xff)) return 'jpeg';
  if (at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50)) return 'webp';
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a) || at(0, 0x49, 0x49, 0x2b, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2b)) return 'tiff';
  if (at(128, 0x44, 0x49, 0x43, 0x4d)) return 'dicom';
  return null;
}

function fail(name: string, what: string, cause?: unknown): never {
  throw new ImageDecodeError(`${name}: ${what}`, cause === undefined ? undefined : { cause });
}

function causeText(err: unknown): string {
  const s = err instanceof Error ? err.message : String(err);
  return s.length > 300 ? `${s.slice(0, 300)}...` : s;
}

/**
 * Decode one image file's bytes and bring it to `spec`: uint8 planar CHW of length `channels * size * size`.
 * `name` is the file's name or path: its extension must be one of {@link IMAGE_EXTENSIONS} or absent; the
 * decoder is picked from the magic bytes. See the module comment for the resize, colour and 16-bit rules.
 * @throws ImageDecodeError for anything wrong with the bytes (too large, unknown format, corrupt, unsupported
 *   DICOM transfer syntax or photometric interpretation, too many pixels); DatasetError for an invalid spec.
 */
export async function decodeImage(bytes: Uint8Array, name: string, spec: DecodeSpec): Promise<Uint8Array> {
  checkInputSpec(spec);
  const ext = extname(name).toLowerCase();
  if (ext !== '' && !IMAGE_EXTENSIONS.includes(ext)) {
    fail(name, `unsupported file type '${ext}': use one of ${IMAGE_EXTENSIONS.join(' ')}`);
  }
  if (bytes.length > MAX_IMAGE_FILE_BYTES) fail(name, `file is ${bytes.length} bytes, more than the ${MAX_IMAGE_FILE_BYTES}-byte limit: downscale it first`);
  const format = sniffImageFormat(bytes);
  if (format === null) {
    const head = Buffer.from(bytes.subarray(0, 8)).toString('hex');
    fail(name, `not a PNG, JPEG, WebP, TIFF or DICOM file (starts with 0x${head || '<empty>'}): the file is corrupt or of another type; re-export or remove it`);
  }
  if (format === 'dicom') {
    const grey = decodeDicomGrey(bytes, name);
    return finishRaw(grey.data, grey.width, grey.height, 1, spec, name);
  }
  return decodeRaster(bytes, name, format, spec);
}

async function decodeRaster(bytes: Uint8Array, name: string, format: ImageFormat, spec: DecodeSpec): Promise<Uint8Array> {
  const input = { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'warning' as const, autoOrient: true };
  let meta: Metadata;
  try {
    meta = await sharp(bytes, input).metadata();
  } catch (err) {
    fail(name, `cannot read the ${format.toUpperCase()} header (${causeText(err)}): the file is corrupt; re-export or remove it`, err);
  }
  if (meta.format !== format) {
    fail(name, `decoder saw '${String(meta.format)}' where the magic bytes announce ${format}: the file is corrupt`);
  }
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  if (!(width > 0 && height > 0)) fail(name, 'image has no pixels');
  if (width * height > MAX_INPUT_PIXELS) fail(name, `image is ${width}x${height}, more than ${MAX_INPUT_PIXELS} pixels: downscale it first`);
  if (meta.depth !== 'uchar' && meta.depth !== 'ushort') {
    fail(name, `sample depth '${String(meta.depth)}' is not supported: convert the image to 8 or 16 bits per sample`);
  }
  const { size, channels } = spec;
  try {
    let p = sharp(bytes, input);
    if (meta.hasAlpha) p = p.flatten({ background: '#000000' });
    if (meta.depth === 'ushort') {
      // 16-bit: libvips's RGB16/GREY16 → sRGB conversion is exactly v >> 8 (greyscale lands in R = G = B),
      // then the 8-bit path below (grey (v, v, v) → v exactly).
      const { data, info } = await p.toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
      return await finishRaw(data, info.width, info.height, info.channels, spec, name);
    }
    if (width !== size || height !== size) p = p.resize(size, size, { fit: 'cover', position: 'centre', kernel: 'lanczos3' });
    p = p.toColourspace(channels === 1 ? 'b-w' : 'srgb');
    const { data, info } = await p.raw().toBuffer({ resolveWithObject: true });
    return toPlanar(data, info, spec, name);
  } catch (err) {
    if (err instanceof ImageDecodeError) throw err;
    fail(name, `cannot decode ${format.toUpperCase()} pixels (${causeText(err)}): the file is corrupt or truncated; re-export or remove it`, err);
  }
}

/** Bring an 8-bit interleaved raw buffer (1 or 3 channels) to `spec`: resize (cover) when needed, colour, CHW. */
export async function finishRaw(data: Uint8Array, width: number, height: number, ch: number, spec: DecodeSpec, name: string): Promise<Uint8Array> {
  const { size, channels } = spec;
  if (ch === 1 && channels === 1 && width === size && height === size) return new Uint8Array(data);
  if (ch !== 1 && ch !== 3) fail(name, `decoded image has ${ch} channels, expected 1 or 3`);
  try {
    let p = sharp(data, { raw: { width, height, channels: ch }, limitInputPixels: MAX_INPUT_PIXELS });
    if (width !== size || height !== size) p = p.resize(size, size, { fit: 'cover', position: 'centre', kernel: 'lanczos3' });
    p = p.toColourspace(channels === 1 ? 'b-w' : 'srgb');
    const out = await p.raw().toBuffer({ resolveWithObject: true });
    return toPlanar(out.data, out.info, spec, name);
  } catch (err) {
    if (err instanceof ImageDecodeError) throw err;
    fail(name, `cannot resize the decoded pixels (${causeText(err)})`, err);
  }
}

function toPlanar(data: Uint8Array, info: OutputInfo, spec: DecodeSpec, name: string): Uint8Array {
  const { size, channels } = spec;
  const plane = size * size;
  if (info.width !== size || info.height !== size || info.channels !== channels || data.length !== plane * channels) {
    fail(name, `decoder produced ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x${channels}`);
  }
  const out = new Uint8Array(plane * channels);
  if (channels === 1) {
    out.set(data);
    return out;
  }
  for (let i = 0, s = 0; i < plane; i++, s += 3) {
    out[i] = data[s];
    out[plane + i] = data[s + 1];
    out[2 * plane + i] = data[s + 2];
  }
  return out;
}

/** Uncompressed transfer syntaxes {@link decodeDicomGrey} reads (native pixel data). */
export const DICOM_NATIVE_TRANSFER_SYNTAXES: Readonly<Record<string, string>> = Object.freeze({
  '1.2.840.10008.1.2': 'Implicit VR Little Endian',
  '1.2.840.10008.1.2.1': 'Explicit VR Little Endian',
  '1.2.840.10008.1.2.2': 'Explicit VR Big Endian',
});

const DICOM_COMPRESSED_NAMES: Readonly<Record<string, string>> = {
  '1.2.840.10008.1.2.1.99': 'Deflated Explicit VR Little Endian',
  '1.2.840.10008.1.2.5': 'RLE Lossless',
  '1.2.840.10008.1.2.4.50': 'JPEG Baseline',
  '1.2.840.10008.1.2.4.51': 'JPEG Extended',
  '1.2.840.10008.1.2.4.57': 'JPEG Lossless',
  '1.2.840.10008.1.2.4.70': 'JPEG Lossless SV1',
  '1.2.840.10008.1.2.4.80': 'JPEG-LS Lossless',
  '1.2.840.10008.1.2.4.81': 'JPEG-LS Near-Lossless',
  '1.2.840.10008.1.2.4.90': 'JPEG 2000 Lossless',
  '1.2.840.10008.1.2.4.91': 'JPEG 2000',
};

function compressedError(name: string, uid: string): never {
  const label = DICOM_COMPRESSED_NAMES[uid] ?? 'a compressed or unknown transfer syntax';
  fail(name, `DICOM transfer syntax ${uid} (${label}) is not supported: only uncompressed pixel data is read; convert it first, e.g. 'gdcmconv --raw in.dcm out.dcm' or 'dcmdjpeg in.dcm out.dcm'`);
}

/**
 * Decode a DICOM Part 10 file's first frame into 8-bit greyscale at its own size (row-major, `width x height`).
 *
 * - Transfer syntax: only the uncompressed ones ({@link DICOM_NATIVE_TRANSFER_SYNTAXES}); any other (JPEG,
 *   JPEG-LS, JPEG 2000, RLE, Deflate) is an ImageDecodeError naming it.
 * - Pixels: Samples per Pixel 1, Photometric Interpretation MONOCHROME1 or MONOCHROME2, Bits Allocated 8 or 16,
 *   Bits Stored / High Bit honoured (the stored bits are masked out and, with Pixel Representation 1, sign-extended).
 *   Only the first frame of a multi-frame file is read. Pixel Padding Value and Presentation LUTs are not applied.
 * - Modality LUT: m = stored * RescaleSlope + RescaleIntercept (defaults 1 and 0).
 * - VOI: with a Window Center c and Window Width w (first values when multi-valued), PS3.3 C.11.2.1.2.1 LINEAR
 *   (the default; needs w >= 1): y = 0 if m <= c - 0.5 - (w - 1) / 2, 255 if m > c - 0.5 + (w - 1) / 2, else
 *   ((m - (c - 0.5)) / (w - 1) + 0.5) * 255; LINEAR_EXACT (C.11.2.1.3.2, w > 0): y = (m - c) / w * 255 + 127.5
 *   clamped to 0..255; SIGMOID (C.11.2.1.3.1): y = 255 / (1 + exp(-4 (m - c) / w)). Without a valid window:
 *   min-max of this image, y = (m - min) / (max - min) * 255 (all 0 when max = min). y is rounded to nearest.
 * - MONOCHROME1 (minimum is white) is inverted: y' = 255 - y.
 * @throws ImageDecodeError on anything it cannot read, naming the tag and what to do.
 */
export function decodeDicomGrey(bytes: Uint8Array, name: string): { data: Uint8Array; width: number; height: number } {
  let ds: DataSet;
  try {
    ds = dicomParser.parseDicom(bytes, {
      inflater: () => {
        throw new ImageDecodeError('deflate');
      },
    });
  } catch (err) {
    if (err instanceof ImageDecodeError) compressedError(name, '1.2.840.10008.1.2.1.99');
    fail(name, `not a readable DICOM file (${causeText(err)}): the file is corrupt or truncated; re-export or remove it`, err);
  }
  const uid = (ds.string('x00020010') ?? '').replace(/\0/g, '').trim();
  if (!(uid in DICOM_NATIVE_TRANSFER_SYNTAXES)) compressedError(name, uid || '<missing>');
  const bigEndian = uid === '1.2.840.10008.1.2.2';
  const samples = ds.uint16('x00280002') ?? 1;
  if (samples !== 1) fail(name, `DICOM Samples per Pixel is ${samples}: only greyscale (1) is supported`);
  const photometric = (ds.string('x00280004') ?? '').trim().toUpperCase();
  if (photometric !== 'MONOCHROME1' && photometric !== 'MONOCHROME2') {
    fail(name, `DICOM Photometric Interpretation '${photometric || '<missing>'}' is not supported: only MONOCHROME1/MONOCHROME2 greyscale`);
  }
  const rows = ds.uint16('x00280010') ?? 0;
  const cols = ds.uint16('x00280011') ?? 0;
  if (!(rows > 0 && cols > 0)) fail(name, `DICOM Rows x Columns is ${rows}x${cols}: the file holds no image`);
  if (rows * cols > MAX_INPUT_PIXELS) fail(name, `DICOM image is ${cols}x${rows}, more than ${MAX_INPUT_PIXELS} pixels`);
  const allocated = ds.uint16('x00280100') ?? 0;
  if (allocated !== 8 && allocated !== 16) fail(name, `DICOM Bits Allocated is ${allocated}: only 8 and 16 are supported`);
  const stored = ds.uint16('x00280101') ?? allocated;
  const highBit = ds.uint16('x00280102') ?? stored - 1;
  if (!(stored >= 1 && stored <= allocated && highBit >= stored - 1 && highBit < allocated)) {
    fail(name, `DICOM Bits Stored ${stored} / High Bit ${highBit} do not fit Bits Allocated ${allocated}`);
  }
  const signed = (ds.uint16('x00280103') ?? 0) === 1;
  const slope = ds.floatString('x00281053') ?? 1;
  const intercept = ds.floatString('x00281052') ?? 0;
  if (!Number.isFinite(slope) || !Number.isFinite(intercept)) fail(name, 'DICOM Rescale Slope/Intercept is not a finite number');
  const el = ds.elements.x7fe00010;
  if (el === undefined) fail(name, 'DICOM file has no Pixel Data (7FE0,0010)');
  if (el.encapsulatedPixelData === true || el.hadUndefinedLength === true) compressedError(name, uid);
  const bytesPer = allocated / 8;
  const count = rows * cols;
  if (el.dataOffset + count * bytesPer > bytes.length || el.length < count * bytesPer) {
    fail(name, `DICOM Pixel Data holds ${el.length} bytes, the ${cols}x${rows}x${allocated}-bit frame needs ${count * bytesPer}: the file is truncated`);
  }

  const dv = new DataView(bytes.buffer, bytes.byteOffset + el.dataOffset, count * bytesPer);
  const shift = highBit + 1 - stored;
  const mask = 2 ** stored - 1;
  const signBit = 2 ** (stored - 1);
  const modality = (i: number): number => {
    const raw = bytesPer === 1 ? dv.getUint8(i) : dv.getUint16(2 * i, !bigEndian);
    let v = (raw >>> shift) & mask;
    if (signed && v >= signBit) v -= 2 * signBit;
    return v * slope + intercept;
  };

  const center = ds.floatString('x00281050', 0);
  const widthW = ds.floatString('x00281051', 0);
  const fn = (ds.string('x00281056') ?? 'LINEAR').trim().toUpperCase();
  let voi: (m: number) => number;
  const haveWindow = center !== undefined && widthW !== undefined && Number.isFinite(center) && Number.isFinite(widthW);
  if (haveWindow && fn === 'SIGMOID' && widthW > 0) {
    voi = (m) => 255 / (1 + Math.exp((-4 * (m - center)) / widthW));
  } else if (haveWindow && fn === 'LINEAR_EXACT' && widthW > 0) {
    voi = (m) => (m - center) / widthW * 255 + 127.5;
  } else if (haveWindow && fn !== 'SIGMOID' && fn !== 'LINEAR_EXACT' && widthW >= 1) {
    const lo = center - 0.5 - (widthW - 1) / 2;
    const hi = center - 0.5 + (widthW - 1) / 2;
    voi = (m) => (m <= lo ? 0 : m > hi ? 255 : ((m - (center - 0.5)) / (widthW - 1) + 0.5) * 255);
  } else {
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < count; i++) {
      const m = modality(i);
      if (m < min) min = m;
      if (m > max) max = m;
    }
    const range = max - min;
    voi = range > 0 ? (m) => ((m - min) / range) * 255 : () => 0;
  }
  const invert = photometric === 'MONOCHROME1';
  const data = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    let y = Math.round(voi(modality(i)));
    y = y < 0 ? 0 : y > 255 ? 255 : y;
    data[i] = invert ? 255 - y : y;
  }
  return { data, width: cols, height: rows };
}
