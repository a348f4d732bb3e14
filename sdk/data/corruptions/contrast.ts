// contrast: pulls every value towards its image's per-channel mean: (x - mean) * factor + mean.
import { level, perImage, type Corruption } from './common.ts';

/** Contrast factor, severities 1-5 (CIFAR-10-C's table). */
export const CONTRAST = [0.75, 0.5, 0.4, 0.3, 0.15] as const;

export const contrast: Corruption = {
  name: 'contrast',
  random: false,
  apply(batch, severity, opts) {
    const factor = CONTRAST[level(severity, this.name)]!;
    return perImage(this.name, batch, opts, (x, _rng, { channels: C }) => {
      const n = x.length / C;
      for (let c = 0; c < C; c++) {
        let sum = 0;
        for (let p = 0; p < n; p++) sum += x[p * C + c]!;
        const mean = sum / n;
        for (let p = 0; p < n; p++) x[p * C + c] = (x[p * C + c]! - mean) * factor + mean;
      }
      return x;
    });
  },
};
