// shot_noise: photon (Poisson) noise. Each value becomes Poisson(x * rate) / rate, so darker
// regions and lower rates get relatively more noise. Poisson draws: inversion of the CDF for
// rate * x < 30, the normal approximation above (its error is far below one grey level there).
// Both use per-pixel draws made in the same order at every severity, so a pixel's noise grows
// with severity instead of being redrawn.
import { level, perImage, type Corruption } from './common.ts';

/** Photon count at full scale, severities 1-5 (CIFAR-10-C's table): fewer photons, more noise. */
export const SHOT_NOISE_RATE = [500, 250, 100, 75, 50] as const;

export const shotNoise: Corruption = {
  name: 'shot_noise',
  random: true,
  apply(batch, severity, opts) {
    const rate = SHOT_NOISE_RATE[level(severity, this.name)]!;
    return perImage(this.name, batch, opts, (x, rng) => {
      for (let k = 0; k < x.length; k++) {
        const lam = x[k]! * rate;
        const u = rng.uniform();
        const z = rng.normal();
        let count: number;
        if (lam >= 30) {
          count = Math.max(0, Math.round(lam + Math.sqrt(lam) * z));
        } else {
          let p = Math.exp(-lam);
          let f = p;
          count = 0;
          while (u > f && count < 200) {
            count++;
            p *= lam / count;
            f += p;
          }
        }
        x[k] = count / rate;
      }
      return x;
    });
  },
};
