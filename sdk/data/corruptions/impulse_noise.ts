// impulse_noise: salt-and-pepper noise. Each value independently becomes 0 or 1 (even odds)
// with probability `amount`. The draws are made at every severity, so the pixels hit at one
// severity are a subset of those hit at the next.
import { level, perImage, type Corruption } from './common.ts';

/** Fraction of values replaced, severities 1-5 (CIFAR-10-C's table). */
export const IMPULSE_NOISE_AMOUNT = [0.01, 0.02, 0.03, 0.05, 0.07] as const;

export const impulseNoise: Corruption = {
  name: 'impulse_noise',
  random: true,
  apply(batch, severity, opts) {
    const amount = IMPULSE_NOISE_AMOUNT[level(severity, this.name)]!;
    return perImage(this.name, batch, opts, (x, rng) => {
      for (let k = 0; k < x.length; k++) {
        const hit = rng.uniform();
        const salt = rng.uniform() < 0.5;
        if (hit < amount) x[k] = salt ? 1 : 0;
      }
      return x;
    });
  },
};
