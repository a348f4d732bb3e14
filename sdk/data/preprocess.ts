// Model-input preprocessing: HWC uint8 images (any size, 1 or 3 channels) to the Float32 NCHW
// tensor a model wants, as its manifest's `preprocess` block says. The same function runs offline
// (eval, quantizer calibration) and on the device (frames from OpenCV converted by
// `frameToImage` to the same HWC layout), so both see identical inputs.
//
// Per image, all in OpenCV: channel conversion (gray -> RGB replicates, RGB -> gray is Rec. 601
// luma), geometry, then per-channel (x / 255 - mean) / std written straight into its plane.
//   stretch      resize to height x width, aspect ratio not kept
//   center-crop  scale so the image covers height x width, crop the centre
//   letterbox    scale so the image fits inside, pad the rest with black (0) evenly on both sides
// Shrinking uses area averaging, enlarging bilinear interpolation.
import { TtaqError } from '../errors/index.ts';
import { PreprocessSchema, type Preprocess } from '../manifest/index.ts';
import type { Batch } from './corruptions/common.ts';
import { cv, f32Of, matFromU8, type Mat } from './cv.ts';

/** The manifest's preprocessing block (one schema, defined with the manifest). */
export { PreprocessSchema, type Preprocess };

export interface InputTensor {
  readonly data: Float32Array;
  /** [N, C, H, W] */
  readonly dims: readonly [number, number, number, number];
}

/** Parses a preprocessing block (e.g. from a config file); errors name the key. */
export function parsePreprocess(json: unknown, source = 'preprocess'): Preprocess {
  const r = PreprocessSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new TtaqError('CONFIG_INVALID', `${source}: '${issue.path.join('.') || '(root)'}' ${issue.message}`, { path: issue.path });
  }
  return checkPreprocess(r.data, source);
}

function checkPreprocess(p: Preprocess, source: string): Preprocess {
  for (const key of ['mean', 'std'] as const) {
    if (p[key].length !== 1 && p[key].length !== p.channels) {
      throw new TtaqError('CONFIG_INVALID', `${source}: '${key}' has ${p[key].length} values for ${p.channels} channels; give one value or one per channel`);
    }
  }
  return p;
}

const interpFor = (fromH: number, fromW: number, toH: number, toW: number): number =>
  toH < fromH || toW < fromW ? cv().INTER_AREA : cv().INTER_LINEAR;

function geometry(m: Mat, p: Pick<Preprocess, 'height' | 'width' | 'resize'>): Mat {
  const c = cv();
  const h = m.rows;
  const w = m.cols;
  if (h === p.height && w === p.width) return m;
  if (p.resize === 'stretch') return m.resize(new c.Size(p.width, p.height), 0, 0, interpFor(h, w, p.height, p.width));
  if (p.resize === 'center-crop') {
    const s = Math.max(p.height / h, p.width / w);
    const rh = Math.max(p.height, Math.round(h * s));
    const rw = Math.max(p.width, Math.round(w * s));
    const r = m.resize(new c.Size(rw, rh), 0, 0, interpFor(h, w, rh, rw));
    return r.getRegion(new c.Rect(Math.floor((rw - p.width) / 2), Math.floor((rh - p.height) / 2), p.width, p.height)).copy();
  }
  const s = Math.min(p.height / h, p.width / w);
  const rh = Math.min(p.height, Math.max(1, Math.round(h * s)));
  const rw = Math.min(p.width, Math.max(1, Math.round(w * s)));
  const r = m.resize(new c.Size(rw, rh), 0, 0, interpFor(h, w, rh, rw));
  const top = Math.floor((p.height - rh) / 2);
  const left = Math.floor((p.width - rw) / 2);
  return r.copyMakeBorder(top, p.height - rh - top, left, p.width - rw - left, c.BORDER_CONSTANT, 0);
}

/** Channel conversion, then geometry: the model's H x W x C from one image's Mat (8-bit). */
function toModelLayout(m: Mat, channels: number, spec: Pick<Preprocess, 'height' | 'width' | 'channels' | 'resize'>): Mat {
  const c = cv();
  let out = m;
  if (channels === 1 && spec.channels === 3) out = out.cvtColor(c.COLOR_GRAY2RGB);
  else if (channels === 3 && spec.channels === 1) out = out.cvtColor(c.COLOR_RGB2GRAY);
  return geometry(out, spec);
}

/**
 * One HWC uint8 image (1 or 3 channels, any size) brought to the model's input layout
 * (spec.height x spec.width x spec.channels, HWC uint8) by the steps preprocessBatch takes before
 * it normalises: channel conversion, then the manifest's resize. preprocessBatch of the result is
 * preprocessBatch of the image, so a folder of mixed sizes can be stored at one size, as the
 * model's preprocessing would have made it.
 */
export function fitImage(image: Uint8Array, height: number, width: number, channels: number, spec: Pick<Preprocess, 'height' | 'width' | 'channels' | 'resize'>): Uint8Array {
  if (channels !== 1 && channels !== 3) throw new TtaqError('DATA_BAD_FORMAT', `fitImage: ${channels}-channel image; convert it to 1 (gray) or 3 (RGB) channels first`);
  if (image.length !== height * width * channels) throw new TtaqError('DATA_BAD_FORMAT', `fitImage: an image of ${height}x${width}x${channels} needs ${height * width * channels} bytes, got ${image.length}`);
  const m = toModelLayout(matFromU8(image, height, width, channels), channels, spec);
  return new Uint8Array(m.getData());
}

/**
 * Preprocesses a batch (dataset layout: count images of height x width x channels, HWC uint8)
 * into the model input. `out`, when given, is reused (it must hold at least N*C*H*W floats).
 */
export function preprocessBatch(batch: Batch, spec: Preprocess, out?: Float32Array): InputTensor {
  checkPreprocess(spec, 'preprocess');
  const c = cv();
  const { count: n, height, width, channels } = batch;
  if (channels !== 1 && channels !== 3) {
    throw new TtaqError('DATA_BAD_FORMAT', `preprocess: ${channels}-channel images; convert frames to 1 (gray) or 3 (RGB) channels first (frameToImage does)`);
  }
  const per = height * width * channels;
  if (batch.images.length !== n * per) {
    throw new TtaqError('DATA_BAD_FORMAT', `preprocess: ${n} images of ${height}x${width}x${channels} need ${n * per} bytes, got ${batch.images.length}`);
  }
  const C = spec.channels;
  const plane = spec.height * spec.width;
  const size = n * C * plane;
  if (out && out.length < size) throw new TtaqError('INTERNAL', `preprocess: output buffer holds ${out.length} floats, ${size} needed`);
  const data = out ? out.subarray(0, size) : new Float32Array(size);
  const mean = (k: number): number => spec.mean[spec.mean.length === 1 ? 0 : k]!;
  const std = (k: number): number => spec.std[spec.std.length === 1 ? 0 : k]!;
  for (let i = 0; i < n; i++) {
    const m = toModelLayout(matFromU8(batch.images.subarray(i * per, (i + 1) * per), height, width, channels), channels, spec);
    const planes = C === 1 ? [m] : m.splitChannels();
    for (let k = 0; k < C; k++) {
      const f = planes[k]!.convertTo(c.CV_32F, 1 / (255 * std(k)), -mean(k) / std(k));
      data.set(f32Of(f), (i * C + k) * plane);
    }
  }
  return { data, dims: [n, C, spec.height, spec.width] };
}
