// glass_blur: the look of frosted glass: Gaussian blur, then local pixel shuffling (every pixel
// swapped with a random neighbour within `delta` px, for `iterations` sweeps, bottom-right to
// top-left, each pixel with probability `fraction`), then Gaussian blur again. The swap offsets are drawn identically at every severity.
import { gaussianBlur, level, perImage, spatialScale, type Corruption } from './common.ts';

/**
 * [blur sigma px, max swap distance px, sweeps, fraction of pixels swapped per sweep], pixels of
 * a 32x32 image, severities 1-5. Our own table after CIFAR-10-C's (sigma 0.05-0.4, distance 1,
 * 1-2 sweeps): there every pixel is swapped in every sweep, so the shuffle is as strong at
 * severity 1 as at 5 and more blur *lowers* the pixel error; here the swapped fraction and the
 * blur both grow with severity.
 */
export const GLASS_BLUR = [[0.3, 1, 1, 0.25], [0.35, 1, 1, 0.45], [0.4, 1, 1, 0.7], [0.45, 1, 2, 0.6], [0.5, 1, 3, 0.8]] as const;

export const glassBlur: Corruption = {
  name: 'glass_blur',
  random: true,
  apply(batch, severity, opts) {
    const [sigma0, delta0, iterations, fraction] = GLASS_BLUR[level(severity, this.name)]!;
    const s = spatialScale(batch);
    const sigma = sigma0 * s;
    const d = Math.max(1, Math.round(delta0 * s));
    const maxIter = GLASS_BLUR[4][2];
    return perImage(this.name, batch, opts, (x0, rng, shape) => {
      const { height: H, width: W, channels: C } = shape;
      const x = gaussianBlur(x0, shape, sigma);
      const y = x === x0 ? new Float32Array(x0) : x;
      for (let it = 0; it < maxIter; it++) {
        for (let h = H - 1; h >= 0; h--) {
          for (let w = W - 1; w >= 0; w--) {
            const dy = rng.int(2 * d + 1) - d;
            const dx = rng.int(2 * d + 1) - d;
            const u = rng.uniform();
            if (it >= iterations || u >= fraction) continue; // draws still made: the same at every severity
            const h2 = Math.min(H - 1, Math.max(0, h + dy));
            const w2 = Math.min(W - 1, Math.max(0, w + dx));
            const a = (h * W + w) * C;
            const b = (h2 * W + w2) * C;
            for (let c = 0; c < C; c++) {
              const t = y[a + c]!;
              y[a + c] = y[b + c]!;
              y[b + c] = t;
            }
          }
        }
      }
      return gaussianBlur(y, shape, sigma);
    });
  },
};
