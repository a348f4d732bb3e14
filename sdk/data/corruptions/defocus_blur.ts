// defocus_blur: convolution with a disk (an out-of-focus lens' point spread), whose edge is
// softened by a small Gaussian ("alias blur"), through OpenCV's filter2D. The disk is rasterised
// by area coverage rather than CIFAR-10-C's pixel-centre test, so radii under one pixel (28x28
// images) still blur, and blur grows monotonically with the radius.
import { convolve, gaussianBlur, level, perImage, spatialScale, type Corruption } from './common.ts';

/** [disk radius, alias-blur sigma] in pixels of a 32x32 image, severities 1-5 (CIFAR-10-C's table). */
export const DEFOCUS_BLUR = [[0.3, 0.4], [0.4, 0.5], [0.5, 0.6], [1, 0.2], [1.5, 0.1]] as const;

/** The normalised disk kernel of `radius` px, blurred by `alias` px; returns it and its side. */
export function diskKernel(radius: number, alias: number): { kernel: Float32Array; size: number } {
  const half = Math.ceil(radius) + Math.max(1, Math.ceil(3 * alias));
  const size = 2 * half + 1;
  let k: Float32Array = new Float32Array(size * size);
  // Each kernel cell holds the fraction of its area inside the disk (8x8 supersampling), so the
  // kernel grows smoothly with the radius; small images get radii under one pixel.
  const sub = 8;
  for (let y = -half; y <= half; y++) {
    for (let x = -half; x <= half; x++) {
      let inside = 0;
      for (let i = 0; i < sub; i++) {
        for (let j = 0; j < sub; j++) {
          const yy = y - 0.5 + (i + 0.5) / sub;
          const xx = x - 0.5 + (j + 0.5) / sub;
          if (xx * xx + yy * yy <= radius * radius) inside++;
        }
      }
      k[(y + half) * size + x + half] = inside / (sub * sub) + (x === 0 && y === 0 && radius < 0.5 / sub ? 1 : 0);
    }
  }
  if (alias > 0) k = gaussianBlur(k, { height: size, width: size, channels: 1 }, alias);
  let sum = 0;
  for (const v of k) sum += v;
  for (let i = 0; i < k.length; i++) k[i] = k[i]! / sum;
  return { kernel: k, size };
}

export const defocusBlur: Corruption = {
  name: 'defocus_blur',
  random: false,
  apply(batch, severity, opts) {
    const [r, a] = DEFOCUS_BLUR[level(severity, this.name)]!;
    const s = spatialScale(batch);
    const { kernel, size } = diskKernel(r * s, a * s);
    return perImage(this.name, batch, opts, (x, _rng, shape) => convolve(x, shape, kernel, size, size));
  },
};
