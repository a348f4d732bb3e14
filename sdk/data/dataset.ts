// The in-memory dataset every reader returns and every corruption, stream and preprocessor takes.
//
//   images   count * height * width * channels bytes: uint8, HWC per image, images one after another
//            (channels 1 = grayscale, 3 = RGB in R, G, B order)
//   labels   count integer labels (Uint8Array when all fit in a byte, else Int32Array; -1 = unknown)
//   classes  optional class names in label order
//
// The shape is a structural superset of sdk/train's `ImageSet` (`count`, not `n`), so a Dataset
// can be handed to the training loop unchanged.
import { TtaqError } from '../errors/index.ts';

export type Labels = Uint8Array | Int32Array;

export interface Dataset {
  readonly count: number;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  readonly images: Uint8Array;
  readonly labels: Labels;
  readonly classes?: readonly string[];
}

export const imageSize = (d: Pick<Dataset, 'height' | 'width' | 'channels'>): number => d.height * d.width * d.channels;

/** Checks sizes and label range; the error names `what`. */
export function checkDataset(d: Dataset, what = 'dataset'): Dataset {
  if (!(d.channels === 1 || d.channels === 3)) {
    throw new TtaqError('DATA_BAD_FORMAT', `${what}: ${d.channels} channels; only 1 (gray) or 3 (RGB) are supported, convert the images first`);
  }
  if (!(d.height > 0 && d.width > 0 && Number.isInteger(d.height) && Number.isInteger(d.width))) {
    throw new TtaqError('DATA_BAD_FORMAT', `${what}: image size ${d.height}x${d.width} is not a positive integer size`);
  }
  if (d.images.length !== d.count * imageSize(d)) {
    throw new TtaqError('DATA_BAD_FORMAT', `${what}: ${d.count} images of ${d.height}x${d.width}x${d.channels} need ${d.count * imageSize(d)} bytes, got ${d.images.length}; the reader or the files are wrong`);
  }
  if (d.labels.length !== d.count) {
    throw new TtaqError('DATA_BAD_FORMAT', `${what}: ${d.count} images but ${d.labels.length} labels; the image and label files do not belong together`);
  }
  return d;
}

/** The smallest label array type holding `values`. */
export function packLabels(values: ArrayLike<number>): Labels {
  let fitsByte = true;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v < 0 || v > 255) { fitsByte = false; break; }
  }
  return fitsByte ? Uint8Array.from(values) : Int32Array.from(values);
}

/** Number of classes: `classes.length` when named, else max label + 1. */
export function numClasses(d: Dataset): number {
  if (d.classes) return d.classes.length;
  let m = -1;
  for (let i = 0; i < d.labels.length; i++) m = Math.max(m, d.labels[i]!);
  return m + 1;
}

/** One image's bytes (a view, not a copy). */
export function imageAt(d: Dataset, i: number): Uint8Array {
  const per = imageSize(d);
  return d.images.subarray(i * per, (i + 1) * per);
}

/** The samples at `indices`, in that order (copies). */
export function select(d: Dataset, indices: ArrayLike<number>): Dataset {
  const per = imageSize(d);
  const images = new Uint8Array(indices.length * per);
  const labels = d.labels instanceof Uint8Array ? new Uint8Array(indices.length) : new Int32Array(indices.length);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k]!;
    if (!(i >= 0 && i < d.count)) throw new TtaqError('INTERNAL', `select: index ${i} outside [0, ${d.count})`);
    images.set(d.images.subarray(i * per, (i + 1) * per), k * per);
    labels[k] = d.labels[i]!;
  }
  return { ...d, count: indices.length, images, labels };
}

/** The first `n` samples (views, for --limit). */
export function take(d: Dataset, n: number): Dataset {
  if (!Number.isInteger(n) || n < 0) throw new TtaqError('DATA_BAD_SPEC', `take: an image count must be an integer >= 0, got ${n}`);
  if (n >= d.count) return d;
  const per = imageSize(d);
  return { ...d, count: n, images: d.images.subarray(0, n * per), labels: d.labels.subarray(0, n) };
}

/** Datasets of the same image shape, one after another. */
export function concat(parts: readonly Dataset[]): Dataset {
  if (parts.length === 0) throw new TtaqError('INTERNAL', 'concat: no datasets');
  const first = parts[0]!;
  for (const p of parts) {
    if (p.height !== first.height || p.width !== first.width || p.channels !== first.channels) {
      throw new TtaqError('DATA_BAD_FORMAT', `cannot concatenate ${p.height}x${p.width}x${p.channels} images with ${first.height}x${first.width}x${first.channels}; resize them to one size first`);
    }
  }
  const count = parts.reduce((s, p) => s + p.count, 0);
  const images = new Uint8Array(count * imageSize(first));
  const labelValues = new Int32Array(count);
  let o = 0;
  for (const p of parts) {
    images.set(p.images, o * imageSize(first));
    labelValues.set(p.labels, o);
    o += p.count;
  }
  return { count, height: first.height, width: first.width, channels: first.channels, images, labels: packLabels(labelValues), ...(first.classes ? { classes: first.classes } : {}) };
}

/** Peak signal-to-noise ratio (dB) between two equally sized uint8 arrays (Infinity when equal). */
export function psnr(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new TtaqError('INTERNAL', `psnr: sizes differ (${a.length} vs ${b.length})`);
  let se = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    se += d * d;
  }
  if (se === 0) return Infinity;
  return 10 * Math.log10((255 * 255 * a.length) / se);
}
