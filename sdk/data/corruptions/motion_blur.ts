// motion_blur: a one-sided streak, as from the camera moving during exposure: the kernel puts
// Gaussian-decaying weights (sigma) along a line of length `radius` from the centre at a random
// angle, splatted bilinearly at sub-pixel positions; OpenCV's filter2D applies it. The angle is
// drawn per image, the same at every severity.
import { convolve, level, perImage, spatialScale, type Corruption } from './common.ts';

/** [streak length px, weight sigma px], pixels of a 32x32 image, severities 1-5 (CIFAR-10-C's table). */
export const MOTION_BLUR = [[10, 1], [10, 1.5], [10, 2], [10, 2.5], [12, 3]] as const;
/** Angle range in degrees (uniform). */
export const MOTION_BLUR_ANGLE = [-45, 45] as const;

/** The normalised motion kernel; `angle` in degrees (0 = streak towards +x, counter-clockwise). */
export function motionKernel(radius: number, sigma: number, angleDeg: number): { kernel: Float32Array; size: number } {
  const reach = Math.min(radius, 3 * sigma);
  const half = Math.ceil(reach) + 1;
  const size = 2 * half + 1;
  const k = new Float32Array(size * size);
  const ca = Math.cos((angleDeg * Math.PI) / 180);
  const sa = -Math.sin((angleDeg * Math.PI) / 180);
  const steps = Math.max(1, Math.ceil(reach * 4));
  for (let i = 0; i <= steps; i++) {
    const t = (reach * i) / steps;
    const w = Math.exp(-(t * t) / (2 * sigma * sigma));
    const px = half + t * ca;
    const py = half + t * sa;
    const x0 = Math.floor(px);
    const y0 = Math.floor(py);
    const fx = px - x0;
    const fy = py - y0;
    const add = (yy: number, xx: number, v: number): void => {
      if (yy >= 0 && yy < size && xx >= 0 && xx < size) k[yy * size + xx] = k[yy * size + xx]! + v;
    };
    add(y0, x0, w * (1 - fx) * (1 - fy));
    add(y0, x0 + 1, w * fx * (1 - fy));
    add(y0 + 1, x0, w * (1 - fx) * fy);
    add(y0 + 1, x0 + 1, w * fx * fy);
  }
  let sum = 0;
  for (const v of k) sum += v;
  for (let i = 0; i < k.length; i++) k[i] = k[i]! / sum;
  return { kernel: k, size };
}

export const motionBlur: Corruption = {
  name: 'motion_blur',
  random: true,
  apply(batch, severity, opts) {
    const [r, sg] = MOTION_BLUR[level(severity, this.name)]!;
    const s = spatialScale(batch);
    return perImage(this.name, batch, opts, (x, rng, shape) => {
      const angle = rng.range(MOTION_BLUR_ANGLE[0], MOTION_BLUR_ANGLE[1]);
      const { kernel, size } = motionKernel(r * s, sg * s, angle);
      return convolve(x, shape, kernel, size, size);
    });
  },
};
