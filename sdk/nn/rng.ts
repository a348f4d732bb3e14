// A small seeded PRNG (xoshiro128**) whose whole state is four 32-bit words, so training can
// checkpoint it and resume the exact same stream. Not for cryptography.
import { TtaqError } from '../errors/index.ts';
import { mix32, Xoshiro128 } from '../random/index.ts';

/** Serialisable generator state: four unsigned 32-bit words, not all zero. */
export type RngState = readonly [number, number, number, number];

export class Rng extends Xoshiro128 {
  /** Seeds from any integer (expanded by splitmix32, so nearby seeds give unrelated streams). */
  constructor(seed: number) {
    super();
    // splitmix32 over seed, seed + golden, ...: the stream the bundled models were trained with.
    const step = 0x9e3779b9;
    const x = seed >>> 0;
    this.setWords(mix32(x), mix32((x + step) >>> 0), mix32((x + 2 * step) >>> 0), mix32((x + 3 * step) >>> 0));
  }

  static fromState(state: { words: readonly number[]; spare?: number | null }): Rng {
    const w = state.words;
    if (w.length !== 4 || w.some((v) => !Number.isInteger(v) || v < 0 || v > 0xffffffff) || w.every((v) => v === 0)) {
      throw new TtaqError('STATE_MISMATCH', `RNG state must be four unsigned 32-bit words, not all zero; got [${w.join(', ')}]; use a state written by Rng.state()`);
    }
    const r = new Rng(0);
    r.setWords(w[0]!, w[1]!, w[2]!, w[3]!);
    r.spare = state.spare ?? null;
    return r;
  }

  state(): { words: RngState; spare: number | null } {
    return { words: [this.s0, this.s1, this.s2, this.s3], spare: this.spare };
  }
}
