// Frame preprocessing with OpenCV, per the model manifest: colour conversion, resize / crop /
// letterbox, then (x / 255 - mean[c]) / std[c], written as CHW float32 straight into the input
// tensor's memory. Every pixel operation is an OpenCV call; JavaScript only copies channel planes.
import { TtaqError } from '../sdk/errors/index.ts';
import type { Preprocess } from '../sdk/manifest/index.ts';
import type { CV, Mat } from './cv.ts';

export type PreprocessSpec = Pick<Preprocess, 'height' | 'width' | 'channels' | 'resize' | 'mean' | 'std'>;

export const frameSize = (p: PreprocessSpec): number => p.channels * p.height * p.width;

function toColour(cv: CV, m: Mat, channels: 1 | 3): Mat {
  const have = m.channels;
  if (channels === 1) {
    if (have === 1) return m;
    return m.cvtColor(have === 4 ? cv.COLOR_BGRA2GRAY : cv.COLOR_BGR2GRAY);
  }
  if (have === 1) return m.cvtColor(cv.COLOR_GRAY2RGB);
  return m.cvtColor(have === 4 ? cv.COLOR_BGRA2RGB : cv.COLOR_BGR2RGB);
}

function toSize(cv: CV, m: Mat, p: PreprocessSpec): Mat {
  const { height: H, width: W } = p;
  if (m.rows === H && m.cols === W) return m;
  const interp = (w: number, h: number) => (w < m.cols || h < m.rows ? cv.INTER_AREA : cv.INTER_LINEAR);
  if (p.resize === 'stretch') return m.resize(new cv.Size(W, H), 0, 0, interp(W, H));
  if (p.resize === 'center-crop') {
    const s = Math.max(W / m.cols, H / m.rows);
    const w = Math.max(W, Math.round(m.cols * s));
    const h = Math.max(H, Math.round(m.rows * s));
    const r = m.resize(new cv.Size(w, h), 0, 0, interp(w, h));
    return r.getRegion(new cv.Rect((w - W) >> 1, (h - H) >> 1, W, H)).copy();
  }
  // letterbox: fit inside, pad with black
  const s = Math.min(W / m.cols, H / m.rows);
  const w = Math.min(W, Math.max(1, Math.round(m.cols * s)));
  const h = Math.min(H, Math.max(1, Math.round(m.rows * s)));
  const r = m.resize(new cv.Size(w, h), 0, 0, interp(w, h));
  const top = (H - h) >> 1;
  const left = (W - w) >> 1;
  return r.copyMakeBorder(top, H - h - top, left, W - w - left, cv.BORDER_CONSTANT, 0);
}

/** Checks a spec once (not per frame): mean/std have one value or one per channel. */
export function checkSpec(p: PreprocessSpec, where: string): void {
  for (const key of ['mean', 'std'] as const) {
    const n = p[key].length;
    if (n !== 1 && n !== p.channels) {
      throw new TtaqError('MANIFEST_INVALID', `${where}: preprocess.${key} has ${n} values for ${p.channels} channel(s); give 1 or ${p.channels}`);
    }
  }
}

/**
 * Preprocesses one BGR(A)/grey 8-bit frame into `out` (c*h*w float32, CHW) at element `offset`.
 * Returns `out`.
 */
export function preprocessInto(cv: CV, frame: Mat, p: PreprocessSpec, out: Float32Array, offset = 0): Float32Array {
  const plane = p.height * p.width;
  if (out.length < offset + p.channels * plane) {
    throw new TtaqError('INTERNAL', `preprocess target has ${out.length - offset} free elements, needs ${p.channels * plane}`);
  }
  const sized = toSize(cv, toColour(cv, frame, p.channels), p);
  const planes = p.channels === 1 ? [sized] : sized.splitChannels();
  const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  planes.forEach((m, c) => {
    const mean = p.mean[c] ?? p.mean[0]!;
    const std = p.std[c] ?? p.std[0]!;
    // (x / 255 - mean) / std  ==  x * 1/(255 std) - mean/std, in one OpenCV pass per channel
    const f = m.convertTo(cv.CV_32F, 1 / (255 * std), -mean / std);
    bytes.set(f.getData(), (offset + c * plane) * 4);
  });
  return out;
}
