// fog: a plasma fractal (diamond-square) added with weight `thickness`, then the image is
// rescaled by max / (max + thickness) so the brightest point keeps its value: a veil that lowers
// contrast unevenly. The fractal is drawn per image from its generator; the same random numbers
// are used at every severity (only thickness and decay change).
import { level, perImage, type Corruption } from './common.ts';
import { plasma, pow2AtLeast } from './fractal.ts';

/** [thickness, decay], severities 1-5 (CIFAR-10-C's table); decay > 1, smaller = finer fog. */
export const FOG = [[0.2, 3], [0.5, 3], [0.75, 2.5], [1, 2], [1.5, 1.75]] as const;

export const fog: Corruption = {
  name: 'fog',
  random: true,
  apply(batch, severity, opts) {
    const [thickness, decay] = FOG[level(severity, this.name)]!;
    const size = pow2AtLeast(Math.max(batch.height, batch.width));
    return perImage(this.name, batch, opts, (x, rng, shape) => {
      const { height: H, width: W, channels: C } = shape;
      let max = 0;
      for (const v of x) if (v > max) max = v;
      const map = plasma(rng, size, decay);
      for (let y = 0; y < H; y++) {
        for (let xx = 0; xx < W; xx++) {
          const f = thickness * map[y * size + xx]!;
          for (let c = 0; c < C; c++) {
            const k = (y * W + xx) * C + c;
            x[k] = ((x[k]! + f) * max) / (max + thickness);
          }
        }
      }
      return x;
    });
  },
};
