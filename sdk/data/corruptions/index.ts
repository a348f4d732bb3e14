// The corruption registry: the 15 Hendrycks-Dietterich corruptions in the continual protocol's
// order, one file each. Adding one is adding a file and a line here; an unknown name fails with
// the list of known ones.
import { TtaqError } from '../../errors/index.ts';
import type { Dataset } from '../dataset.ts';
import { brightness } from './brightness.ts';
import type { Batch, Corruption, CorruptOptions, Severity } from './common.ts';
import { contrast } from './contrast.ts';
import { defocusBlur } from './defocus_blur.ts';
import { elasticTransform } from './elastic_transform.ts';
import { fog } from './fog.ts';
import { frost } from './frost.ts';
import { gaussianNoise } from './gaussian_noise.ts';
import { glassBlur } from './glass_blur.ts';
import { impulseNoise } from './impulse_noise.ts';
import { jpegCompression } from './jpeg_compression.ts';
import { motionBlur } from './motion_blur.ts';
import { pixelate } from './pixelate.ts';
import { shotNoise } from './shot_noise.ts';
import { snow } from './snow.ts';
import { zoomBlur } from './zoom_blur.ts';

export type { Batch, Corruption, CorruptOptions, Severity } from './common.ts';

/** The 15 corruptions in the order of the continual protocol (SPEC section 7). */
export const CORRUPTIONS = [
  'gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'glass_blur', 'motion_blur', 'zoom_blur',
  'snow', 'frost', 'fog', 'brightness', 'contrast', 'elastic_transform', 'pixelate', 'jpeg_compression',
] as const;
export type CorruptionName = (typeof CORRUPTIONS)[number];

export const SEVERITIES: readonly Severity[] = [1, 2, 3, 4, 5];

const registry: Readonly<Record<CorruptionName, Corruption>> = {
  gaussian_noise: gaussianNoise,
  shot_noise: shotNoise,
  impulse_noise: impulseNoise,
  defocus_blur: defocusBlur,
  glass_blur: glassBlur,
  motion_blur: motionBlur,
  zoom_blur: zoomBlur,
  snow,
  frost,
  fog,
  brightness,
  contrast,
  elastic_transform: elasticTransform,
  pixelate,
  jpeg_compression: jpegCompression,
};

export const isCorruptionName = (s: string): s is CorruptionName => (CORRUPTIONS as readonly string[]).includes(s);

export function getCorruption(name: string): Corruption {
  if (!isCorruptionName(name)) {
    throw new TtaqError('DATA_BAD_SPEC', `unknown corruption '${name}'; known: ${CORRUPTIONS.join(', ')}`);
  }
  return registry[name];
}

/** Corrupted images of a batch (HWC uint8, same shape). */
export function corruptImages(batch: Batch, name: string, severity: number, opts?: CorruptOptions): Uint8Array {
  if (!Number.isInteger(severity) || severity < 1 || severity > 5) {
    throw new TtaqError('DATA_BAD_SPEC', `${name}: severity ${severity} is not one of 1, 2, 3, 4, 5`);
  }
  if (batch.count === 0) return new Uint8Array(0);
  return getCorruption(name).apply(batch, severity as Severity, opts);
}

/** A corrupted copy of a dataset (labels and class names kept). */
export function corrupt(d: Dataset, name: string, severity: number, opts?: CorruptOptions): Dataset {
  return { ...d, images: corruptImages(d, name, severity, opts) };
}

/**
 * Parses a corruption list: 'all' or comma-separated names (also accepts the 'clean' pseudo-domain
 * when `allowClean`).
 */
export function parseCorruptionList(text: string, allowClean = false): string[] {
  if (text.trim() === 'all') return [...CORRUPTIONS];
  const names = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new TtaqError('DATA_BAD_SPEC', `empty corruption list '${text}'; give 'all' or names like gaussian_noise,fog`);
  for (const n of names) if (!(allowClean && n === 'clean')) getCorruption(n);
  return names;
}

/** Parses severities: '5', '1-5', '1,3,5'. */
export function parseSeverities(text: string): Severity[] {
  const out = new Set<number>();
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d)(?:-(\d))?$/.exec(part);
    const lo = m ? Number(m[1]) : NaN;
    const hi = m?.[2] !== undefined ? Number(m[2]) : lo;
    if (!m || lo < 1 || hi > 5 || lo > hi) {
      throw new TtaqError('DATA_BAD_SPEC', `bad severities '${text}': use one of 1..5, a range like 1-5, or a list like 1,3,5`);
    }
    for (let s = lo; s <= hi; s++) out.add(s);
  }
  if (out.size === 0) throw new TtaqError('DATA_BAD_SPEC', `no severities in '${text}'`);
  return [...out].sort() as Severity[];
}
