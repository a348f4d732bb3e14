// gaussian_noise: additive white Gaussian noise, independent per pixel and channel.
import { level, perImage, type Corruption } from './common.ts';

/** Noise standard deviation as a fraction of full scale, severities 1-5 (CIFAR-10-C's table). */
export const GAUSSIAN_NOISE_STD = [0.04, 0.06, 0.08, 0.09, 0.1] as const;

export const gaussianNoise: Corruption = {
  name: 'gaussian_noise',
  random: true,
  apply(batch, severity, opts) {
    const std = GAUSSIAN_NOISE_STD[level(severity, this.name)]!;
    return perImage(this.name, batch, opts, (x, rng) => {
      for (let k = 0; k < x.length; k++) x[k] = x[k]! + std * rng.normal();
      return x;
    });
  },
};
