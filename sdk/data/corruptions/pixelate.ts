// pixelate: the image at a resolution `factor` times lower (area averaging), shown as a block
// mosaic at the original size. The mosaic is rendered at 4x (nearest, pixel-centre aligned) and
// area-averaged down, so blocks that do not fall on pixel boundaries are drawn exactly instead
// of being snapped (snapping at 28 px makes the error depend on rounding luck, not on the factor).
import { cv } from '../cv.ts';
import { level, perImage, resize, type Corruption } from './common.ts';

/**
 * Linear resolution factor, severities 1-5; dimensionless. Our own table: CIFAR-10-C's
 * (0.95, 0.9, 0.85, 0.75, 0.65) changes a 28 px image by 1-2 px per step, where resampling
 * aliasing dominates and distortion is not monotone in severity.
 */
export const PIXELATE = [0.9, 0.8, 0.7, 0.6, 0.5] as const;
const SUPERSAMPLE = 4;

export const pixelate: Corruption = {
  name: 'pixelate',
  random: false,
  apply(batch, severity, opts) {
    const f = PIXELATE[level(severity, this.name)]!;
    const c = cv();
    const nearestExact = (c as unknown as { INTER_NEAREST_EXACT?: number }).INTER_NEAREST_EXACT ?? 6;
    const h = Math.max(1, Math.floor(batch.height * f));
    const w = Math.max(1, Math.floor(batch.width * f));
    return perImage(this.name, batch, opts, (x, _rng, shape) => {
      const C = shape.channels;
      const small = resize(x, shape, h, w, c.INTER_AREA);
      const bigH = shape.height * SUPERSAMPLE;
      const bigW = shape.width * SUPERSAMPLE;
      const big = resize(small, { height: h, width: w, channels: C }, bigH, bigW, nearestExact);
      return resize(big, { height: bigH, width: bigW, channels: C }, shape.height, shape.width, c.INTER_AREA);
    });
  },
};
