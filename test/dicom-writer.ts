/**
 * A minimal DICOM Part 10 writer for tests: a Secondary Capture greyscale image with the tags the decoder reads,
 * file meta in Explicit VR Little Endian, the data set in Explicit (default) or Implicit VR Little Endian.
 * Not a general writer: just enough to produce valid uncompressed files that a real parser (dicom-parser) reads.
 */

/** What to put into the file. */
export interface DicomImage {
  rows: number;
  columns: number;
  /** Stored values, row-major: Uint8Array (Bits Allocated 8), Uint16Array / Int16Array (16). */
  pixels: Uint8Array | Uint16Array | Int16Array;
  photometric?: 'MONOCHROME1' | 'MONOCHROME2' | 'RGB';
  bitsStored?: number;
  /** Window Center / Width (DS), written when both are given. */
  window?: { center: number; width: number };
  /** Rescale Intercept / Slope (DS), written when given. */
  rescale?: { intercept: number; slope: number };
  voiLutFunction?: string;
  transferSyntax?: string;
  /** Encode the data set with Implicit VR Little Endian (sets the transfer syntax to 1.2.840.10008.1.2). */
  implicit?: boolean;
}

const LONG_VRS = new Set(['OB', 'OW', 'OF', 'SQ', 'UT', 'UN']);

function pad(value: Uint8Array, padByte: number): Uint8Array {
  if (value.length % 2 === 0) return value;
  const out = new Uint8Array(value.length + 1);
  out.set(value);
  out[value.length] = padByte;
  return out;
}

function elementBytes(group: number, element: number, vr: string, value: Uint8Array, implicit: boolean): Uint8Array {
  const padded = pad(value, vr === 'UI' || vr === 'OB' ? 0 : 0x20);
  const long = LONG_VRS.has(vr);
  const headLen = implicit ? 8 : long ? 12 : 8;
  const out = new Uint8Array(headLen + padded.length);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, group, true);
  dv.setUint16(2, element, true);
  if (implicit) {
    dv.setUint32(4, padded.length, true);
  } else {
    out[4] = vr.charCodeAt(0);
    out[5] = vr.charCodeAt(1);
    if (long) dv.setUint32(8, padded.length, true);
    else dv.setUint16(6, padded.length, true);
  }
  out.set(padded, headLen);
  return out;
}

const ascii = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
const us = (v: number): Uint8Array => {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, v, true);
  return b;
};
const ul = (v: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
};

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Encode `img` as a DICOM Part 10 file. */
export function writeDicom(img: DicomImage): Uint8Array {
  const implicit = img.implicit === true;
  const ts = implicit ? '1.2.840.10008.1.2' : (img.transferSyntax ?? '1.2.840.10008.1.2.1');
  const sopClass = '1.2.840.10008.5.1.4.1.1.7';
  const sopInstance = '1.2.826.0.1.3680043.10.1234.1';
  const metaBody = concat([
    elementBytes(0x0002, 0x0001, 'OB', new Uint8Array([0, 1]), false),
    elementBytes(0x0002, 0x0002, 'UI', ascii(sopClass), false),
    elementBytes(0x0002, 0x0003, 'UI', ascii(sopInstance), false),
    elementBytes(0x0002, 0x0010, 'UI', ascii(ts), false),
    elementBytes(0x0002, 0x0012, 'UI', ascii('1.2.826.0.1.3680043.10.1234'), false),
  ]);
  const meta = concat([elementBytes(0x0002, 0x0000, 'UL', ul(metaBody.length), false), metaBody]);
  const bits = img.pixels instanceof Uint8Array ? 8 : 16;
  const stored = img.bitsStored ?? bits;
  const signed = img.pixels instanceof Int16Array ? 1 : 0;
  const px = new Uint8Array(img.pixels.buffer, img.pixels.byteOffset, img.pixels.byteLength);
  const ds: Uint8Array[] = [
    elementBytes(0x0008, 0x0016, 'UI', ascii(sopClass), implicit),
    elementBytes(0x0008, 0x0018, 'UI', ascii(sopInstance), implicit),
    elementBytes(0x0028, 0x0002, 'US', us(img.photometric === 'RGB' ? 3 : 1), implicit),
    elementBytes(0x0028, 0x0004, 'CS', ascii(img.photometric ?? 'MONOCHROME2'), implicit),
    elementBytes(0x0028, 0x0010, 'US', us(img.rows), implicit),
    elementBytes(0x0028, 0x0011, 'US', us(img.columns), implicit),
    elementBytes(0x0028, 0x0100, 'US', us(bits), implicit),
    elementBytes(0x0028, 0x0101, 'US', us(stored), implicit),
    elementBytes(0x0028, 0x0102, 'US', us(stored - 1), implicit),
    elementBytes(0x0028, 0x0103, 'US', us(signed), implicit),
  ];
  if (img.window) {
    ds.push(elementBytes(0x0028, 0x1050, 'DS', ascii(String(img.window.center)), implicit));
    ds.push(elementBytes(0x0028, 0x1051, 'DS', ascii(String(img.window.width)), implicit));
  }
  if (img.rescale) {
    ds.push(elementBytes(0x0028, 0x1052, 'DS', ascii(String(img.rescale.intercept)), implicit));
    ds.push(elementBytes(0x0028, 0x1053, 'DS', ascii(String(img.rescale.slope)), implicit));
  }
  if (img.voiLutFunction !== undefined) ds.push(elementBytes(0x0028, 0x1056, 'CS', ascii(img.voiLutFunction), implicit));
  ds.push(elementBytes(0x7fe0, 0x0010, bits === 8 ? 'OB' : 'OW', px, implicit));
  return concat([new Uint8Array(128), ascii('DICM'), meta, ...ds]);
}
