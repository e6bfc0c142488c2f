/**
 * Listing of an image folder or a CSV of `path,label[,split]` rows: which files, which class, which split.
 * No pixel is decoded here; see image-folder.ts for the loader that uses it.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import type { Dirent, Stats } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { IMAGE_EXTENSIONS } from './decode.ts';
import { DatasetError } from './types.ts';

/** Most classes of an image set (labels are stored as uint8). */
export const MAX_IMAGE_CLASSES = 256;
/** Longest class name, in characters. */
export const MAX_CLASS_NAME_CHARS = 128;
/** Deepest folder level walked below a class folder (`<class>/a/b/...`); deeper folders are skipped and counted. */
export const MAX_FOLDER_DEPTH = 8;
/** Largest CSV listing read, in bytes (64 MiB). */
export const MAX_CSV_BYTES = 64 * 1024 * 1024;
/** Longest path field of a CSV row, in characters. */
export const MAX_CSV_PATH_CHARS = 4096;
/** How many skipped files are reported by name (the rest are only counted). */
export const MAX_SKIPPED_EXAMPLES = 5;

/** Why an image folder could not be loaded; one value per user-facing failure. */
export type ImageFolderErrorReason =
  /** The path does not exist. */
  | 'MISSING_PATH'
  /** The path is neither a folder nor a .csv file. */
  | 'NOT_FOLDER_OR_CSV'
  /** A folder without class folders (and no train/ subfolder with any). */
  | 'NO_CLASS_FOLDERS'
  /** train/ and test/ mixed with other folders, or test/ without train/. */
  | 'BAD_LAYOUT'
  /** No file could be decoded (or none has a supported extension). */
  | 'NO_IMAGES'
  /** The declared class list is empty, has duplicates, bad names or too many entries. */
  | 'BAD_CLASSES'
  /** A class folder or CSV label outside the declared class list. */
  | 'UNKNOWN_CLASS'
  /** A malformed CSV row. */
  | 'BAD_CSV'
  /** More images than `maxImages`, or more pixel bytes than the dataset byte limit. */
  | 'TOO_LARGE'
  /** An invalid loader option. */
  | 'BAD_OPTION';

/** An image folder or CSV could not be loaded. `reason` is machine-readable; the message says what to do. */
export class ImageFolderError extends DatasetError {
  readonly reason: ImageFolderErrorReason;
  constructor(reason: ImageFolderErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/** One image file of a listing. */
export interface ListedFile {
  /** Path relative to the folder (or the CSV's folder), '/'-separated; the sort key. */
  rel: string;
  abs: string;
  size: number;
  mtimeNs: bigint;
  label: number;
  /** The split the layout or the CSV assigns, or null when the seeded test fraction decides. */
  split: 'train' | 'test' | null;
}

/** A file that will not be loaded, and why. */
export interface SkippedFile {
  file: string;
  reason: string;
}

/** The result of listing a folder or CSV. */
export interface Listing {
  kind: 'folder' | 'csv';
  /** Absolute, resolved path of the folder or CSV. */
  root: string;
  classes: string[];
  /** Sorted by `rel`. */
  files: ListedFile[];
  /** Files left out before decoding (unsupported extension, missing, too deep, not a regular file). */
  skipped: { count: number; examples: SkippedFile[] };
  /** True when the layout (test/ subfolder or a CSV split column) assigned at least one file's split. */
  explicitSplit: boolean;
}

/** Options of {@link listImageSource}. */
export interface ListOptions {
  classes?: string[];
  maxImages: number;
  concurrency: number;
}

class SkipLog {
  count = 0;
  examples: SkippedFile[] = [];
  add(file: string, reason: string): void {
    this.count++;
    if (this.examples.length < MAX_SKIPPED_EXAMPLES) this.examples.push({ file, reason });
  }
}

const toPosix = (p: string): string => (sep === '/' ? p : p.split(sep).join('/'));
const hidden = (name: string): boolean => name.startsWith('.');
const supported = (name: string): boolean => {
  const ext = extname(name).toLowerCase();
  return ext === '' || IMAGE_EXTENSIONS.includes(ext);
};

/** Run `fn(i)` for i in 0..n-1 with at most `limit` calls in flight. */
export async function runPool(n: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, n)) }, worker));
}

/**
 * Check a declared class list. @throws ImageFolderError BAD_CLASSES when it is empty, longer than
 * {@link MAX_IMAGE_CLASSES}, has duplicates or an empty / too long / path-like name.
 */
export function checkClasses(classes: readonly string[]): void {
  if (!Array.isArray(classes) || classes.length === 0) {
    throw new ImageFolderError('BAD_CLASSES', 'the declared class list is empty: name the classes (e.g. --classes normal,pneumonia) or omit it to use the sorted folder names');
  }
  if (classes.length > MAX_IMAGE_CLASSES) throw new ImageFolderError('BAD_CLASSES', `${classes.length} classes declared, at most ${MAX_IMAGE_CLASSES} are supported`);
  const seen = new Set<string>();
  for (const c of classes) {
    if (typeof c !== 'string' || c.length === 0 || c.length > MAX_CLASS_NAME_CHARS || /[/\\\0]/.test(c)) {
      throw new ImageFolderError('BAD_CLASSES', `class name '${String(c)}' is invalid: use 1..${MAX_CLASS_NAME_CHARS} characters without '/', '\\' or NUL`);
    }
    if (seen.has(c)) throw new ImageFolderError('BAD_CLASSES', `class '${c}' is declared twice: list each class once`);
    seen.add(c);
  }
}

const sortStrings = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

async function dirs(path: string): Promise<{ dirs: string[]; entries: Dirent[] }> {
  const entries = await readdir(path, { withFileTypes: true });
  return { dirs: entries.filter((e) => e.isDirectory() && !hidden(e.name)).map((e) => e.name).sort(sortStrings), entries };
}

interface Candidate {
  rel: string;
  abs: string;
  cls: string;
  split: 'train' | 'test' | null;
}

/**
 * List a folder (`<dir>/<class>/...` or `<dir>/train/<class>/...` + `<dir>/test/<class>/...`) or a CSV.
 * With train/ and test/ the folders fix each file's split; with train/ alone (or the flat layout) the split is
 * left to the seeded test fraction.
 * Folder rules: hidden entries (name starting with '.') are ignored; files directly in `<dir>` (or in train/,
 * test/) are ignored; every file below a class folder (at most {@link MAX_FOLDER_DEPTH} levels deep) whose
 * extension is in IMAGE_EXTENSIONS or absent is a candidate, others are skipped and counted; symbolic links
 * to files are followed, to folders not.
 * @throws ImageFolderError (see {@link ImageFolderErrorReason}).
 */
export async function listImageSource(path: string, opts: ListOptions): Promise<Listing> {
  const root = resolve(path);
  let st: Stats;
  try {
    st = await stat(root);
  } catch (err) {
    throw new ImageFolderError('MISSING_PATH', `data path ${root} does not exist or cannot be read (${(err as Error).message}): check the --data path`, { cause: err });
  }
  if (opts.classes !== undefined) checkClasses(opts.classes);
  const skipped = new SkipLog();
  let cands: Candidate[];
  let folderClasses: string[];
  let kind: 'folder' | 'csv';
  if (st.isFile()) {
    if (extname(root).toLowerCase() !== '.csv') {
      throw new ImageFolderError('NOT_FOLDER_OR_CSV', `data path ${root} is a file but not a .csv: pass a folder of class folders or a .csv of path,label rows`);
    }
    kind = 'csv';
    ({ cands, folderClasses } = await listCsv(root, opts, skipped));
  } else if (st.isDirectory()) {
    kind = 'folder';
    ({ cands, folderClasses } = await listFolder(root, opts, skipped));
  } else {
    throw new ImageFolderError('NOT_FOLDER_OR_CSV', `data path ${root} is neither a folder nor a .csv file`);
  }

  const classes = opts.classes !== undefined ? [...opts.classes] : folderClasses;
  if (opts.classes === undefined) {
    if (classes.length === 0) throw new ImageFolderError('NO_IMAGES', `no labelled images in ${root}`);
    checkClasses(classes);
  }
  const index = new Map(classes.map((c, i) => [c, i]));
  const unknown = new Map<string, string[]>();
  for (const c of cands) {
    if (index.has(c.cls)) continue;
    const l = unknown.get(c.cls) ?? [];
    if (l.length < 3) l.push(c.rel);
    unknown.set(c.cls, l);
  }
  if (unknown.size > 0) {
    const [cls, files] = [...unknown.entries()][0];
    const what = kind === 'csv' ? `label '${cls}' in ${root}` : `class folder '${cls}'`;
    throw new ImageFolderError(
      'UNKNOWN_CLASS',
      `${what} is not in the declared class list (${classes.join(', ')}): files ${files.join(', ')}${unknown.size > 1 ? ` (and ${unknown.size - 1} more unknown classes: ${[...unknown.keys()].slice(1, 4).join(', ')})` : ''}; add the class to the federation's class list or move these files out`,
    );
  }
  if (cands.length === 0) {
    const ex = skipped.examples.map((s) => s.file).join(', ');
    throw new ImageFolderError('NO_IMAGES', `no image files in ${root}${skipped.count > 0 ? ` (${skipped.count} files with other types skipped, e.g. ${ex})` : ''}: put ${IMAGE_EXTENSIONS.join(' ')} files into one folder per class`);
  }

  const stats: ({ size: number; mtimeNs: bigint } | null)[] = new Array(cands.length).fill(null);
  await runPool(cands.length, opts.concurrency * 4, async (i) => {
    try {
      const s = await stat(cands[i].abs, { bigint: true });
      if (s.isFile()) stats[i] = { size: Number(s.size), mtimeNs: s.mtimeNs };
    } catch {
      // left null: reported below
    }
  });
  const files: ListedFile[] = [];
  for (let i = 0; i < cands.length; i++) {
    const c = cands[i];
    const s = stats[i];
    if (s === null) {
      skipped.add(c.rel, 'missing or not a regular file');
      continue;
    }
    files.push({ rel: c.rel, abs: c.abs, size: s.size, mtimeNs: s.mtimeNs, label: index.get(c.cls) as number, split: c.split });
  }
  files.sort((a, b) => sortStrings(a.rel, b.rel));
  return { kind, root, classes, files, skipped: { count: skipped.count, examples: skipped.examples }, explicitSplit: cands.some((c) => c.split !== null) };
}

async function listFolder(root: string, opts: ListOptions, skipped: SkipLog): Promise<{ cands: Candidate[]; folderClasses: string[] }> {
  const top = await dirs(root);
  const cands: Candidate[] = [];
  const classSet = new Set<string>();
  const walkClass = async (base: string, relBase: string, cls: string, split: Candidate['split']): Promise<void> => {
    classSet.add(cls);
    const walk = async (dir: string, rel: string, depth: number): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        skipped.add(rel, `folder unreadable: ${(err as Error).message}`);
        return;
      }
      entries.sort((a, b) => sortStrings(a.name, b.name));
      for (const e of entries) {
        if (hidden(e.name)) continue;
        const r = `${rel}/${e.name}`;
        const abs = join(dir, e.name);
        if (e.isDirectory()) {
          if (depth >= MAX_FOLDER_DEPTH) skipped.add(r, `folder deeper than ${MAX_FOLDER_DEPTH} levels below the class folder`);
          else await walk(abs, r, depth + 1);
        } else if (e.isFile() || e.isSymbolicLink()) {
          if (!supported(e.name)) {
            skipped.add(r, `unsupported file type '${extname(e.name)}' (use ${IMAGE_EXTENSIONS.join(' ')})`);
            continue;
          }
          if (cands.length >= opts.maxImages) {
            throw new ImageFolderError('TOO_LARGE', `${root} holds more than ${opts.maxImages} image files (maxImages): raise the limit or split the data`);
          }
          cands.push({ rel: r, abs, cls, split });
        } else {
          skipped.add(r, 'not a regular file');
        }
      }
    };
    await walk(base, relBase, 0);
  };
  if (top.dirs.includes('train')) {
    const others = top.dirs.filter((d) => d !== 'train' && d !== 'test');
    if (others.length > 0) {
      throw new ImageFolderError('BAD_LAYOUT', `${root} has a train/ folder next to other folders (${others.slice(0, 3).join(', ')}): put every class folder under train/ (and test/), or remove train/`);
    }
    // With test/, the folders decide the split; train/ alone leaves it to the seeded test fraction.
    const hasTest = top.dirs.includes('test');
    for (const split of ['train', 'test'] as const) {
      if (!top.dirs.includes(split)) continue;
      for (const cls of (await dirs(join(root, split))).dirs) await walkClass(join(root, split, cls), `${split}/${cls}`, cls, hasTest ? split : null);
    }
  } else if (top.dirs.includes('test')) {
    throw new ImageFolderError('BAD_LAYOUT', `${root} has a test/ folder but no train/ folder: add train/<class>/ folders, or rename test/ if it is a class`);
  } else {
    for (const cls of top.dirs) await walkClass(join(root, cls), cls, cls, null);
  }
  if (classSet.size === 0) {
    throw new ImageFolderError('NO_CLASS_FOLDERS', `no class folders in ${root}: put the images into one folder per class (${root}/<class>/*.png), optionally under train/ and test/, or pass a .csv of path,label rows`);
  }
  return { cands, folderClasses: [...classSet].sort(sortStrings) };
}

/**
 * Split one CSV line into fields (RFC 4180: commas, double quotes, "" for a quote inside a quoted field).
 * @returns null when a quoted field is not closed.
 */
export function parseCsvLine(line: string): string[] | null {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (line[i] === '"') {
      i++;
      for (;;) {
        if (i >= line.length) return null;
        if (line[i] === '"') {
          if (line[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += line[i++];
      }
      while (i < line.length && line[i] !== ',') field += line[i++];
    } else {
      const j = line.indexOf(',', i);
      field = j < 0 ? line.slice(i) : line.slice(i, j);
      i = j < 0 ? line.length : j;
    }
    out.push(field.trim());
    if (i >= line.length) return out;
    i++; // the comma
  }
}

const HEADER_NAMES = new Set(['path', 'file', 'filename', 'image']);

async function listCsv(root: string, opts: ListOptions, skipped: SkipLog): Promise<{ cands: Candidate[]; folderClasses: string[] }> {
  const st = await stat(root);
  if (st.size > MAX_CSV_BYTES) throw new ImageFolderError('TOO_LARGE', `${root} is ${st.size} bytes, more than the ${MAX_CSV_BYTES}-byte CSV limit: split the listing`);
  let text = (await readFile(root)).toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const base = dirname(root);
  const lines = text.split(/\r?\n/);
  const cands: Candidate[] = [];
  const labels = new Set<string>();
  const seen = new Map<string, number>();
  function bad(line: number, what: string): never {
    throw new ImageFolderError('BAD_CSV', `${basename(root)} line ${line}: ${what}; rows are path,label or path,label,train|test (paths relative to the CSV's folder)`);
  }
  let first = true;
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n];
    if (line.trim() === '') continue;
    const f = parseCsvLine(line);
    if (f === null) bad(n + 1, 'unclosed quote');
    const isHeader = first && HEADER_NAMES.has(f[0].toLowerCase());
    first = false;
    if (isHeader) continue;
    if (f.length < 2 || f.length > 3) bad(n + 1, `${f.length} fields`);
    const [p, label, splitField = ''] = f;
    if (p === '' || label === '') bad(n + 1, 'empty path or label');
    if (p.length > MAX_CSV_PATH_CHARS) bad(n + 1, `path longer than ${MAX_CSV_PATH_CHARS} characters`);
    const s = splitField.toLowerCase();
    if (s !== '' && s !== 'train' && s !== 'test') bad(n + 1, `split '${splitField}' is not train or test`);
    const abs = isAbsolute(p) ? resolve(p) : resolve(base, p);
    const rel = toPosix(relative(base, abs));
    const prev = seen.get(rel);
    if (prev !== undefined) bad(n + 1, `${p} is listed again (first on line ${prev})`);
    seen.set(rel, n + 1);
    if (!supported(p)) {
      skipped.add(rel, `unsupported file type '${extname(p)}' (use ${IMAGE_EXTENSIONS.join(' ')})`);
      continue;
    }
    if (cands.length >= opts.maxImages) throw new ImageFolderError('TOO_LARGE', `${root} lists more than ${opts.maxImages} images (maxImages): raise the limit or split the listing`);
    labels.add(label);
    cands.push({ rel, abs, cls: label, split: s === '' ? null : (s as 'train' | 'test') });
  }
  if (cands.length === 0 && skipped.count === 0) throw new ImageFolderError('NO_IMAGES', `${root} lists no images: add path,label rows`);
  return { cands, folderClasses: [...labels].sort(sortStrings) };
}

/** A 53-bit string hash (cyrb53), seeded; used to order files for the seeded split. Not cryptographic. */
export function hash53(s: string, seed: number): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/**
 * Decide the split of the files without one: per class, order those files by `hash53(rel, seed)` (ties by
 * `rel`) and put the first min(round(n * testFraction), n - 1) into test, the rest into train. Seeded,
 * stratified (exact per-class counts), and stable: adding one file moves at most one other file.
 * @returns the split of every file, aligned with `files`.
 */
export function assignSplits(files: readonly ListedFile[], numClasses: number, testFraction: number, seed: number): ('train' | 'test')[] {
  const out: ('train' | 'test')[] = files.map((f) => f.split ?? 'train');
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  files.forEach((f, i) => {
    if (f.split === null) byClass[f.label].push(i);
  });
  for (const idx of byClass) {
    const n = idx.length;
    if (n === 0) continue;
    const nTest = Math.min(Math.round(n * testFraction), n - 1);
    const keyed = idx.map((i) => ({ i, h: hash53(files[i].rel, seed) }));
    keyed.sort((a, b) => a.h - b.h || sortStrings(files[a.i].rel, files[b.i].rel));
    for (let t = 0; t < nTest; t++) out[keyed[t].i] = 'test';
  }
  return out;
}
