// Plasma fractal by the diamond-square algorithm on a torus (coordinates wrap), used by fog and
// as the haze of the synthetic frost. Each halving of the step adds uniform noise whose amplitude
// falls by decay^2 (a larger decay gives a smoother, lower-frequency pattern); the result is
// scaled to [0, 1].
import type { DataRng } from '../rng.ts';

/** A size x size plasma map (size a power of two), row-major. */
export function plasma(rng: DataRng, size: number, decay: number): Float32Array {
  const n = size;
  const a = new Float32Array(n * n);
  const at = (y: number, x: number): number => a[(((y % n) + n) % n) * n + (((x % n) + n) % n)]!;
  let amp = 1;
  for (let step = n; step >= 2; step >>= 1) {
    const half = step >> 1;
    // square step: the centre of each square from its four corners
    for (let y = 0; y < n; y += step) {
      for (let x = 0; x < n; x += step) {
        const m = (at(y, x) + at(y, x + step) + at(y + step, x) + at(y + step, x + step)) / 4;
        a[(y + half) * n + x + half] = m + amp * (2 * rng.uniform() - 1);
      }
    }
    // diamond step: each edge midpoint from its two corners and the two neighbouring centres
    for (let y = 0; y < n; y += half) {
      for (let x = (y / half) % 2 === 0 ? half : 0; x < n; x += step) {
        const m = (at(y - half, x) + at(y + half, x) + at(y, x - half) + at(y, x + half)) / 4;
        a[y * n + x] = m + amp * (2 * rng.uniform() - 1);
      }
    }
    amp /= decay * decay;
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of a) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const span = hi - lo || 1;
  for (let i = 0; i < a.length; i++) a[i] = (a[i]! - lo) / span;
  return a;
}

/** The smallest power of two >= n. */
export const pow2AtLeast = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(2, n)));
