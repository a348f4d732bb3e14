// A small seeded PRNG (xoshiro128**) whose whole state is four 32-bit words, so training can
// checkpoint it and resume the exact same stream. Not for cryptography.
import { TtaqError } from '../errors/index.ts';

/** Serialisable generator state: four unsigned 32-bit words, not all zero. */
export type RngState = readonly [number, number, number, number];

const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  /** A spare standard normal from the last Box-Muller pair (part of the state). */
  private spare: number | null = null;

  /** Seeds from any integer (expanded by splitmix32, so nearby seeds give unrelated streams). */
  constructor(seed: number) {
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next(); this.s1 = next(); this.s2 = next(); this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  static fromState(state: { words: readonly number[]; spare?: number | null }): Rng {
    const w = state.words;
    if (w.length !== 4 || w.some((v) => !Number.isInteger(v) || v < 0 || v > 0xffffffff) || w.every((v) => v === 0)) {
      throw new TtaqError('STATE_MISMATCH', `RNG state must be four unsigned 32-bit words, not all zero; got [${w.join(', ')}]; use a state written by Rng.state()`);
    }
    const r = new Rng(0);
    [r.s0, r.s1, r.s2, r.s3] = [w[0]!, w[1]!, w[2]!, w[3]!];
    r.spare = state.spare ?? null;
    return r;
  }

  state(): { words: RngState; spare: number | null } {
    return { words: [this.s0, this.s1, this.s2, this.s3], spare: this.spare };
  }

  /** Next unsigned 32-bit integer. */
  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = this.uniform();
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T extends { length: number; [i: number]: unknown }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }
}
