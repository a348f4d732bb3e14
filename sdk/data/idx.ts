// IDX files (the MNIST / Fashion-MNIST container), raw or gzip-compressed (detected by magic).
// Layout: two zero bytes, a dtype byte, a rank byte, rank big-endian uint32 dimensions, then the
// values big-endian. Images are rank 3 (N, H, W: gray) or rank 4 (N, H, W, C: HWC colour); labels
// rank 1.
//
// Directory conventions (shared with the eval reader):
//   <split>-images-idx3-ubyte[.gz]  + <split>-labels-idx1-ubyte[.gz]   (Fashion-MNIST: train, t10k)
//   <domain>-images-idx3-ubyte[.gz] + <domain>-labels-idx1-ubyte[.gz]  or one shared labels-idx1-ubyte[.gz]
//   colour images use idx4 in the name: <domain>-images-idx4-ubyte[.gz]
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { TtaqError } from '../errors/index.ts';
import { FASHION_MNIST_LABELS } from '../manifest/index.ts';
import { checkDataset, packLabels, type Dataset } from './dataset.ts';
import { entryStats } from './entries.ts';

export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  readonly dims: readonly number[];
  readonly data: IdxData;
}

const DTYPES: Record<number, { size: number; name: string }> = {
  0x08: { size: 1, name: 'ubyte' },
  0x09: { size: 1, name: 'byte' },
  0x0b: { size: 2, name: 'short' },
  0x0c: { size: 4, name: 'int' },
  0x0d: { size: 4, name: 'float' },
  0x0e: { size: 8, name: 'double' },
};

const bad = (source: string, what: string): TtaqError =>
  new TtaqError('DATA_BAD_FORMAT', `${source}: not a valid IDX file (${what}); re-download or regenerate it (ttaq corrupt writes valid ones)`, { source });

/** Decompresses when the bytes start with the gzip magic. */
export function maybeGunzip(bytes: Uint8Array, source: string): Uint8Array {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      return gunzipSync(bytes);
    } catch (e) {
      throw bad(source, `gzip stream broken: ${(e as Error).message}`);
    }
  }
  return bytes;
}

/** Parses IDX bytes (already decompressed). */
export function parseIdx(bytes: Uint8Array, source = 'IDX data'): IdxArray {
  if (bytes.length < 4) throw bad(source, `${bytes.length} bytes, shorter than the 4-byte header`);
  if (bytes[0] !== 0 || bytes[1] !== 0) throw bad(source, `magic starts ${bytes[0]} ${bytes[1]}, expected 0 0`);
  const dtype = bytes[2]!;
  const rank = bytes[3]!;
  const info = DTYPES[dtype];
  if (!info) throw bad(source, `unknown dtype byte 0x${dtype.toString(16)}`);
  if (rank < 1 || rank > 8) throw bad(source, `rank ${rank}`);
  const headerLen = 4 + 4 * rank;
  if (bytes.length < headerLen) throw bad(source, `header needs ${headerLen} bytes, file has ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < rank; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    count *= d;
  }
  const need = headerLen + count * info.size;
  if (bytes.length !== need) {
    throw bad(source, `dimensions [${dims.join(', ')}] of ${info.name} need ${need} bytes, file has ${bytes.length}${bytes.length < need ? ' (truncated)' : ''}`);
  }
  const body = bytes.subarray(headerLen);
  let data: IdxData;
  switch (dtype) {
    case 0x08: data = new Uint8Array(body); break;
    case 0x09: data = new Int8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)); break;
    default: {
      const n = count;
      const out = dtype === 0x0b ? new Int16Array(n) : dtype === 0x0c ? new Int32Array(n) : dtype === 0x0d ? new Float32Array(n) : new Float64Array(n);
      const bv = new DataView(body.buffer, body.byteOffset, body.byteLength);
      for (let i = 0; i < n; i++) {
        out[i] = dtype === 0x0b ? bv.getInt16(2 * i, false) : dtype === 0x0c ? bv.getInt32(4 * i, false) : dtype === 0x0d ? bv.getFloat32(4 * i, false) : bv.getFloat64(8 * i, false);
      }
      data = out;
    }
  }
  return { dims, data };
}

/** Encodes uint8 or int32 data as IDX bytes (int32 for labels that do not fit a byte). */
export function encodeIdx(data: Uint8Array | Int32Array, dims: readonly number[]): Uint8Array {
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new TtaqError('INTERNAL', `encodeIdx: dims [${dims.join(', ')}] hold ${count} values, data has ${data.length}`);
  const size = data instanceof Uint8Array ? 1 : 4;
  const out = new Uint8Array(4 + 4 * dims.length + count * size);
  const view = new DataView(out.buffer);
  out[2] = data instanceof Uint8Array ? 0x08 : 0x0c;
  out[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  const off = 4 + 4 * dims.length;
  if (data instanceof Uint8Array) out.set(data, off);
  else for (let i = 0; i < count; i++) view.setInt32(off + 4 * i, data[i]!, false);
  return out;
}

export async function readIdx(path: string): Promise<IdxArray> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new TtaqError('DATA_NOT_FOUND', `cannot read IDX file ${path}: ${(e as Error).message}; check the path (--data)`, { path }, { cause: e });
  }
  return parseIdx(maybeGunzip(bytes, path), path);
}

/** Writes IDX, gzip-compressed when the path ends in .gz. */
export async function writeIdx(path: string, data: Uint8Array | Int32Array, dims: readonly number[]): Promise<void> {
  const raw = encodeIdx(data, dims);
  await writeFile(path, path.endsWith('.gz') ? gzipSync(raw, { level: 6 }) : raw);
}

/** Builds a dataset from image and label IDX arrays. */
export function idxToDataset(images: IdxArray, labels: IdxArray, source: string, classes?: readonly string[]): Dataset {
  if (!(images.data instanceof Uint8Array)) throw bad(source, 'images must be unsigned bytes (dtype 0x08)');
  if (images.dims.length !== 3 && images.dims.length !== 4) throw bad(source, `images have rank ${images.dims.length}; expected 3 (N, H, W) or 4 (N, H, W, C)`);
  if (labels.dims.length !== 1) throw bad(source, `labels have rank ${labels.dims.length}; expected 1`);
  const [n, h, w, c = 1] = images.dims as [number, number, number, number?];
  if (c !== 1 && c !== 3) {
    // checkDataset would say "28 channels": the usual cause is a channel-first array written as is
    const chw = h === 1 || h === 3;
    throw bad(source, `images have dims [${images.dims.join(', ')}], read as N, H, W, C: ${c} channels, but only 1 or 3 are supported${chw ? `; they look channel-first (N, C, H, W): IDX images are N, H, W[, C], so transpose to [${n}, ${w}, ${c}, ${h}]` : ''}`);
  }
  if (labels.dims[0] !== n) {
    throw new TtaqError('DATA_BAD_FORMAT', `${source}: ${n} images but ${labels.dims[0]} labels; the image and label files do not belong together`);
  }
  const lab = labels.data;
  for (let i = 0; i < lab.length; i++) {
    if (!Number.isInteger(lab[i]!)) throw bad(source, `label ${i} is ${lab[i]}, not an integer`);
  }
  return checkDataset({ count: n, height: h, width: w, channels: c, images: images.data, labels: packLabels(lab), ...(classes ? { classes } : {}) }, source);
}

export async function readIdxDataset(imagesPath: string, labelsPath: string, classes?: readonly string[]): Promise<Dataset> {
  const [im, lb] = await Promise.all([readIdx(imagesPath), readIdx(labelsPath)]);
  return idxToDataset(im, lb, imagesPath, classes);
}

const withGz = (dir: string, base: string): string | null => {
  for (const p of [join(dir, base), join(dir, base + '.gz')]) if (existsSync(p)) return p;
  return null;
};

/** The image and label files of `name` (a split like train/t10k/test, or a domain) in `dir`. */
export function findIdxPair(dir: string, name: string): { images: string; labels: string } {
  const prefixes = name === 'test' ? ['test', 't10k'] : [name];
  for (const p of prefixes) {
    const images = withGz(dir, `${p}-images-idx3-ubyte`) ?? withGz(dir, `${p}-images-idx4-ubyte`);
    if (!images) continue;
    const labels = withGz(dir, `${p}-labels-idx1-ubyte`) ?? withGz(dir, 'labels-idx1-ubyte');
    if (!labels) {
      throw new TtaqError('DATA_NOT_FOUND', `${dir}: found ${images} but neither ${p}-labels-idx1-ubyte[.gz] nor a shared labels-idx1-ubyte[.gz]; add the labels file`);
    }
    return { images, labels };
  }
  const present = existsSync(dir) ? listIdxNames(dir) : [];
  throw new TtaqError('DATA_NOT_FOUND', `${dir}: no ${prefixes.map((p) => `${p}-images-idx3-ubyte[.gz]`).join(' or ')}${present.length ? `; present: ${present.join(', ')}` : existsSync(dir) ? '; the folder holds no IDX images' : '; the folder does not exist'} (pick one with --split)`);
}

/** Names (splits or domains) that have an images IDX file in `dir`, sorted. */
export function listIdxNames(dir: string): string[] {
  const names = new Set<string>();
  for (const f of readdirSync(dir)) {
    const m = /^(.+)-images-idx[34]-ubyte(\.gz)?$/.exec(f);
    if (!m) continue;
    // a broken link would be listed here and then reported missing by name: entryStats names it now
    entryStats(join(dir, f));
    names.add(m[1]!);
  }
  return [...names].sort();
}

/** Reads split/domain `name` from an IDX folder. */
export async function readIdxDir(dir: string, name: string, classes?: readonly string[]): Promise<Dataset> {
  const { images, labels } = findIdxPair(dir, name);
  return readIdxDataset(images, labels, classes);
}

export interface WriteIdxOptions {
  /** gzip the files (default true). */
  readonly gzip?: boolean;
  /** Write labels as the folder's shared labels-idx1-ubyte instead of <name>-labels-idx1-ubyte. */
  readonly sharedLabels?: boolean;
}

/** Writes a dataset as `<name>-images-idx{3,4}-ubyte[.gz]` + labels; returns the paths. */
export async function writeIdxDataset(dir: string, name: string, d: Dataset, opts: WriteIdxOptions = {}): Promise<{ images: string; labels: string }> {
  await mkdir(dir, { recursive: true });
  const gz = opts.gzip === false ? '' : '.gz';
  const rank = d.channels === 1 ? 3 : 4;
  const images = join(dir, `${name}-images-idx${rank}-ubyte${gz}`);
  const labels = join(dir, opts.sharedLabels ? `labels-idx1-ubyte${gz}` : `${name}-labels-idx1-ubyte${gz}`);
  const dims = rank === 3 ? [d.count, d.height, d.width] : [d.count, d.height, d.width, d.channels];
  await writeIdx(images, d.images, dims);
  await writeIdx(labels, d.labels instanceof Uint8Array ? d.labels : Int32Array.from(d.labels), [d.count]);
  return { images, labels };
}

/**
 * The class-names sidecar of an IDX folder: `classes.txt`, line i naming label i. IDX labels are
 * bare numbers; written from a class-folder tree they are the sorted folder index, which means
 * nothing to a model with another label order unless the names travel with them.
 */
export const IDX_CLASSES_FILE = 'classes.txt';

export async function writeIdxClasses(dir: string, classes: readonly string[]): Promise<string> {
  const path = join(dir, IDX_CLASSES_FILE);
  await writeFile(path, classes.map((c) => `${c}\n`).join(''));
  return path;
}

/** The folder's class names in label order, or undefined when it has no sidecar. */
export function readIdxClasses(dir: string): string[] | undefined {
  const path = join(dir, IDX_CLASSES_FILE);
  if (!existsSync(path)) return undefined;
  const names = readFileSync(path, 'utf8').split('\n').map((l) => l.replace(/\r$/, '')).filter((l, i, all) => l !== '' || i < all.length - 1);
  if (names.length === 0 || names.some((n) => n.trim() === '') || new Set(names).size !== names.length) {
    throw new TtaqError('DATA_BAD_FORMAT', `${path}: expected one class name per line (line i names label i), none empty or repeated; fix or delete the file`, { path });
  }
  return names;
}

/** Where the Fashion-MNIST IDX files are: $TTAQ_FASHION_MNIST or the system dataset folder. */
export const fashionMnistDir = (): string => process.env.TTAQ_FASHION_MNIST ?? '/usr/share/datasets/fashion-mnist';

/** Fashion-MNIST `train` or `test` (t10k), with class names. */
export async function readFashionMnist(split: 'train' | 'test' = 'test', dir = fashionMnistDir()): Promise<Dataset> {
  if (split !== 'train' && split !== 'test') throw new TtaqError('DATA_BAD_SPEC', `Fashion-MNIST has the splits 'train' (60,000 images) and 'test' (10,000), not '${String(split)}'`);
  return readIdxDir(dir, split === 'test' ? 't10k' : 'train', FASHION_MNIST_LABELS);
}
