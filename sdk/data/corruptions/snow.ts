// snow: falling snow. A snow layer (Gaussian noise around `mean`, zoomed up by `zoom` to make
// flakes bigger, values under `threshold` dropped) is streaked by a motion blur pointing down
// (angle -135..-45 degrees), the image is whitened towards max(x, 1.5 * grey + 0.5) by 1 - `keep`,
// and the layer is added twice (as is and rotated by 180 degrees).
import { centreZoom, clip01, convolve, level, luminance, perImage, spatialScale, type Corruption } from './common.ts';
import { motionKernel } from './motion_blur.ts';

/**
 * [mean, std, zoom, threshold, streak length px, streak sigma px, keep], severities 1-5; lengths
 * in pixels of a 32x32 image. CIFAR-10-C's table, except keep of severity 3 (0.9 -> 0.87): with
 * the original value severity 3 is hardly stronger than 2 on 28-32 px images.
 */
export const SNOW = [
  [0.1, 0.2, 1, 0.6, 8, 3, 0.95],
  [0.1, 0.2, 1, 0.5, 10, 4, 0.9],
  [0.15, 0.3, 1.75, 0.55, 10, 4, 0.87],
  [0.25, 0.3, 2.25, 0.6, 12, 6, 0.85],
  [0.3, 0.3, 1.25, 0.65, 14, 12, 0.8],
] as const;

export const snow: Corruption = {
  name: 'snow',
  random: true,
  apply(batch, severity, opts) {
    const [mean, std, zoom, threshold, radius, sigma, keep] = SNOW[level(severity, this.name)]!;
    const s = spatialScale(batch);
    return perImage(this.name, batch, opts, (x, rng, shape) => {
      const { height: H, width: W, channels: C } = shape;
      const n = H * W;
      const one = { height: H, width: W, channels: 1 };
      let layer: Float32Array = new Float32Array(n);
      for (let p = 0; p < n; p++) layer[p] = mean + std * rng.normal();
      const angle = rng.range(-135, -45);
      if (zoom > 1) layer = centreZoom(layer, one, zoom);
      for (let p = 0; p < n; p++) {
        const v = layer[p]!;
        layer[p] = v < threshold ? 0 : v > 1 ? 1 : v;
      }
      const { kernel, size } = motionKernel(radius * s, sigma * s, angle);
      layer = convolve(layer, one, kernel, size, size);
      const grey = luminance(x, shape);
      for (let p = 0; p < n; p++) {
        const g = grey[p]! * 1.5 + 0.5;
        const flake = layer[p]! + layer[n - 1 - p]!;
        for (let c = 0; c < C; c++) {
          const v = x[p * C + c]!;
          x[p * C + c] = keep * v + (1 - keep) * Math.max(v, g) + flake;
        }
      }
      return clip01(x);
    });
  },
};
