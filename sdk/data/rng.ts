// The data module's seeded PRNG: xoshiro128** seeded through splitmix32, with bulk fills for noise.
// Corruptions derive one generator per (seed, corruption, image index), so an image's corruption
// does not depend on how the dataset was cut into batches, and the random structure (noise
// pattern, blur angle, warp field) is shared across severities: only the magnitude changes.
// Not for cryptography.

import { mix32, Xoshiro128 } from '../random/index.ts';

export { mix32 } from '../random/index.ts';

/** FNV-1a of a string (stable ids for corruption names). */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

export class DataRng extends Xoshiro128 {
  /** Seeds from one or more integers (each mixed in, so nearby seeds give unrelated streams). */
  constructor(...keys: number[]) {
    super();
    let x = 0x6a09e667;
    for (const k of keys) x = mix32((x ^ (k >>> 0)) >>> 0) ^ mix32((k / 4294967296) >>> 0);
    const next = (): number => (x = mix32(x));
    const w0 = next(), w1 = next(), w2 = next(), w3 = next();
    this.setWords(w0, w1, w2, w3);
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform();
  }

  /** Gamma(shape, 1) (Marsaglia-Tsang; shape < 1 through the u^(1/shape) boost). */
  gamma(shape: number): number {
    if (shape < 1) {
      let u = this.uniform();
      while (u === 0) u = this.uniform();
      return this.gamma(shape + 1) * Math.pow(u, 1 / shape);
    }
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = this.uniform();
      if (u < 1 - 0.0331 * x * x * x * x) return d * v;
      if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
    }
  }

  fillUniform(out: Float32Array, lo = 0, hi = 1): Float32Array {
    const span = (hi - lo) / 4294967296;
    for (let i = 0; i < out.length; i++) out[i] = lo + this.u32() * span;
    return out;
  }

  fillNormal(out: Float32Array, mean = 0, std = 1): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = mean + std * this.normal();
    return out;
  }
}

/** A sample from Dirichlet(alpha * 1_k) (normalised Gamma draws; a degenerate all-zero draw falls back to one-hot). */
export function sampleDirichlet(rng: DataRng, alpha: number, k: number): Float64Array {
  const p = new Float64Array(k);
  let sum = 0;
  for (let i = 0; i < k; i++) sum += p[i] = rng.gamma(alpha);
  if (!(sum > 0)) {
    p.fill(0);
    p[rng.int(k)] = 1;
    return p;
  }
  for (let i = 0; i < k; i++) p[i] = p[i]! / sum;
  return p;
}
