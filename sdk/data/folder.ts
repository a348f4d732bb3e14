// Image folders: one sub-folder per class (sorted names = label order unless `classes` is given),
// or, unlabelled, the images themselves (readUnlabelledImages: calibration frames from a camera);
// JPEG / PNG / WebP files decoded by sharp into the Dataset layout. All images must share one
// size unless `height`/`width` are given (then every image is resized to it, aspect not kept), or
// `fit` is: then each image not in the model's layout is brought to it as the model's
// preprocessing does (fitImage: channel conversion, then the manifest's stretch / center-crop /
// letterbox), so calibration and evaluation see what the device sees after it resizes a frame.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import sharp from 'sharp';
import { TtaqError } from '../errors/index.ts';
import type { ProgressFn } from '../progress/index.ts';
import type { Preprocess } from '../manifest/index.ts';
import { labelFolderName } from './classmatch.ts';
import { checkDataset, imageAt, packLabels, type Dataset } from './dataset.ts';
import { isFolder } from './entries.ts';
import { fitImage } from './preprocess.ts';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp'] as const;

export interface ImageFolderOptions {
  /** 1 (gray) or 3 (RGB); default: 3 when the first image has colour, else 1. */
  readonly channels?: 1 | 3;
  /** Resize every image to this size (default: keep, and require one size). */
  readonly height?: number;
  readonly width?: number;
  /** Class names in label order; folder names not in the list are an error. */
  readonly classes?: readonly string[];
  /** Read at most this many images per class (sorted by file name). */
  readonly limitPerClass?: number;
  /**
   * Read at most this many images in all, spread evenly over the class folders present (a class
   * with fewer images leaves its share to the others); within a class, first by file name.
   */
  readonly limit?: number;
  /**
   * The model's input layout: images of other sizes (or channel counts) are brought to it as the
   * model's preprocessing does (fitImage), so images of several sizes make one dataset, of this
   * layout. Each image is decoded with its own channel count unless `channels` is given.
   */
  readonly fit?: Pick<Preprocess, 'height' | 'width' | 'channels' | 'resize'>;
  /** Told, once, how many images `fit` resized from which sizes. */
  readonly onNote?: (line: string) => void;
  readonly onProgress?: ProgressFn;
}

const isImage = (f: string): boolean => (IMAGE_EXTENSIONS as readonly string[]).includes(extname(f).toLowerCase());

/** The class sub-folders of `dir`, sorted. */
export function classFolders(dir: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new TtaqError('DATA_NOT_FOUND', `image folder ${dir} does not exist; pass a folder with one sub-folder per class`);
  }
  return readdirSync(dir).filter((f) => isFolder(join(dir, f))).sort();
}

/** Decodes one image file to HWC uint8 with `channels` channels, optionally resized. */
export async function decodeImage(path: string, channels?: 1 | 3, height?: number, width?: number): Promise<{ data: Uint8Array; height: number; width: number; channels: 1 | 3 }> {
  try {
    let img = sharp(path, { failOn: 'error' });
    const meta = await img.metadata();
    const ch: 1 | 3 = channels ?? ((meta.channels ?? 3) >= 3 && meta.space !== 'b-w' ? 3 : 1);
    img = img.removeAlpha();
    if (height && width) img = img.resize(width, height, { fit: 'fill' });
    img = ch === 1 ? img.toColourspace('b-w') : img.toColourspace('srgb');
    const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== ch) {
      // sharp keeps 3 channels for some gray inputs: take the first band
      const n = info.width * info.height;
      const out = new Uint8Array(n * ch);
      for (let p = 0; p < n; p++) for (let c = 0; c < ch; c++) out[p * ch + c] = data[p * info.channels + Math.min(c, info.channels - 1)]!;
      return { data: out, height: info.height, width: info.width, channels: ch };
    }
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), height: info.height, width: info.width, channels: ch };
  } catch (e) {
    throw new TtaqError('DATA_BAD_FORMAT', `cannot decode image ${path}: ${(e as Error).message}; remove or replace the file`, { path }, { cause: e });
  }
}

/** Reads an image-folder dataset. */
export async function readImageFolder(dir: string, opts: ImageFolderOptions = {}): Promise<Dataset> {
  const folders = classFolders(dir);
  if (folders.length === 0) throw new TtaqError('DATA_NOT_FOUND', `image folder ${dir} has no class sub-folders; put each class's images in <dir>/<class>/`);
  const classes = opts.classes ?? folders;
  const perClass = folders.map((f) => {
    const label = classes.indexOf(f);
    if (label < 0) throw new TtaqError('DATA_BAD_FORMAT', `${join(dir, f)}: class '${f}' is not in the class list (${classes.slice(0, 5).join(', ')}${classes.length > 5 ? ', ...' : ''}); fix the folder name or the class list`);
    let names = readdirSync(join(dir, f)).filter(isImage).sort();
    if (opts.limitPerClass !== undefined) names = names.slice(0, opts.limitPerClass);
    return { f, label, names };
  });
  const take = opts.limit === undefined ? perClass.map((c) => c.names.length) : spread(opts.limit, perClass.map((c) => c.names.length));
  const files = perClass.flatMap((c, i) => c.names.slice(0, take[i]).map((n) => ({ path: join(dir, c.f, n), label: c.label })));
  if (files.length === 0) throw new TtaqError('DATA_NOT_FOUND', `image folder ${dir} holds no ${IMAGE_EXTENSIONS.join('/')} files in its class sub-folders`);
  return decodeFiles(files, dir, opts, classes);
}

/** How many of each class's `sizes` images make `limit` in all: one from each in turn. */
function spread(limit: number, sizes: readonly number[]): number[] {
  const take = sizes.map(() => 0);
  let left = Math.min(limit, sizes.reduce((a, b) => a + b, 0));
  while (left > 0) {
    for (let i = 0; i < sizes.length && left > 0; i++) if (take[i]! < sizes[i]!) { take[i] = take[i]! + 1; left--; }
  }
  return take;
}

/**
 * Reads the images lying directly in `dir` (no class sub-folders), as calibration data is often
 * kept: a folder of frames from the camera. They carry no labels; every label reads 0 and the set
 * has no class list, so nothing downstream can take them for ground truth.
 */
export async function readUnlabelledImages(dir: string, opts: Omit<ImageFolderOptions, 'classes' | 'limitPerClass'> = {}): Promise<Dataset> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new TtaqError('DATA_NOT_FOUND', `image folder ${dir} does not exist`);
  const files = readdirSync(dir).filter((f) => isImage(f) && statSync(join(dir, f)).isFile()).sort().map((f) => ({ path: join(dir, f), label: 0 }));
  if (files.length === 0) throw new TtaqError('DATA_NOT_FOUND', `image folder ${dir} holds no ${IMAGE_EXTENSIONS.join('/')} files`);
  return decodeFiles(files, dir, opts);
}

/** Decodes `files` (all of one size unless a size or `fit` is given) into a dataset. */
async function decodeFiles(files: readonly { path: string; label: number }[], dir: string, opts: ImageFolderOptions, classes?: readonly string[]): Promise<Dataset> {
  const fit = opts.fit;
  const first = await decodeImage(files[0]!.path, opts.channels, opts.height, opts.width);
  const { height, width, channels } = fit ?? first;
  const per = height * width * channels;
  const images = new Uint8Array(files.length * per);
  // with `fit`: how many images had another size, and which sizes (for the note)
  let resized = 0;
  const sizes = new Map<string, number>();
  const CONCURRENCY = 8;
  for (let s = 0; s < files.length; s += CONCURRENCY) {
    const chunk = files.slice(s, s + CONCURRENCY);
    const decoded = await Promise.all(chunk.map((f, k) => (s + k === 0 ? first : decodeImage(f.path, fit ? opts.channels : channels, opts.height, opts.width))));
    decoded.forEach((img, k) => {
      if (fit) {
        if (img.height !== height || img.width !== width) {
          resized++;
          const key = `${img.height}x${img.width}`;
          sizes.set(key, (sizes.get(key) ?? 0) + 1);
        }
        const same = img.height === height && img.width === width && img.channels === channels;
        images.set(same ? img.data : fitImage(img.data, img.height, img.width, img.channels, fit), (s + k) * per);
        return;
      }
      if (img.height !== height || img.width !== width) {
        throw new TtaqError('DATA_BAD_FORMAT', `${chunk[k]!.path} is ${img.height}x${img.width} but ${files[0]!.path} is ${height}x${width}; the images of one folder must share a size (the model's preprocessing resizes them together): resize them to one size first`);
      }
      images.set(img.data, (s + k) * per);
    });
    opts.onProgress?.({ stage: 'decode', done: Math.min(files.length, s + CONCURRENCY), total: files.length });
  }
  if (fit && resized > 0) {
    const common = [...sizes].sort((a, b) => b[1] - a[1]);
    const from = common.slice(0, 3).map(([k, n]) => `${n} of ${k}`).join(', ') + (common.length > 3 ? `, ${common.length - 3} other sizes` : '');
    opts.onNote?.(`${resized} of ${files.length} images resized from other sizes (${from}) to the model's ${height}x${width} (${fit.resize}, as its preprocessing resizes camera frames)`);
  }
  return checkDataset({ count: files.length, height, width, channels, images, labels: packLabels(files.map((f) => f.label)), ...(classes ? { classes } : {}) }, dir);
}

/** Writes a dataset as an image folder of PNGs: <dir>/<class>/<index>.png. */
export async function writeImageFolder(d: Dataset, dir: string, onProgress?: ProgressFn): Promise<void> {
  const names = d.classes ?? [];
  const folderOf = (label: number): string => names[label] ?? String(label);
  const created = new Set<string>();
  const width = String(Math.max(0, d.count - 1)).length;
  for (let i = 0; i < d.count; i++) {
    const sub = join(dir, labelFolderName(folderOf(d.labels[i]!)));
    if (!created.has(sub)) {
      await mkdir(sub, { recursive: true });
      created.add(sub);
    }
    const png = await sharp(imageAt(d, i), { raw: { width: d.width, height: d.height, channels: d.channels as 1 | 3 } }).png().toBuffer();
    await writeFile(join(sub, `${String(i).padStart(width, '0')}.png`), png);
    if (onProgress && (i % 256 === 255 || i === d.count - 1)) onProgress({ stage: 'write png', done: i + 1, total: d.count });
  }
}
