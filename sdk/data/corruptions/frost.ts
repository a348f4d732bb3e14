// frost: the image dimmed by `keep` plus a frost texture weighted by `amount`. The reference
// (Hendrycks & Dietterich) crops photographs of frosted glass, which we do not have, so the
// texture is synthesised: a plasma-fractal haze plus fern-like ice crystals (random-walk needles
// with side branches at about 60 degrees, drawn anti-aliased at 4x and area-downsampled by
// OpenCV), bluish white on colour images. A bank of FROST_TEXTURES textures twice the image size is
// made from the seed; each image takes a random crop of a random one (like the photo crops).
import { cv, u8Of } from '../cv.ts';
import { DataRng, hash32 } from '../rng.ts';
import { gaussianBlur, level, perImage, type Corruption } from './common.ts';
import { plasma, pow2AtLeast } from './fractal.ts';

/** [keep, amount], severities 1-5: CIFAR-10-C's table with the frost amount of severities 4 and 5
 *  raised (0.4 -> 0.47, 0.45 -> 0.55): with dark images the extra dimming of 4 over 3 otherwise
 *  cancels part of the frost and severity 4 comes out milder than 3. */
export const FROST = [[1, 0.2], [1, 0.3], [0.9, 0.4], [0.85, 0.47], [0.75, 0.55]] as const;
/** Per-channel tint of the texture on RGB images (ice is bluish white). */
export const FROST_TINT = [0.86, 0.93, 1.0] as const;
export const FROST_TEXTURES = 4;

const bank = new Map<string, Float32Array[]>();

/** A size x size frost texture in [0, 1] (deterministic in `rng`). */
export function frostTexture(rng: DataRng, size: number): Float32Array {
  const c = cv();
  const sup = 4;
  const R = size * sup;
  const m = new c.Mat(R, R, c.CV_8UC1, 0);
  const needle = (x: number, y: number, theta: number, len: number, depth: number, bright: number): void => {
    const steps = Math.max(2, Math.round(len / (1.5 * sup)));
    const seg = len / steps;
    let px = x;
    let py = y;
    let a = theta;
    for (let i = 0; i < steps; i++) {
      a += rng.range(-0.12, 0.12);
      const nx = px + seg * Math.cos(a);
      const ny = py + seg * Math.sin(a);
      const v = Math.round(255 * bright * (1 - (0.5 * i) / steps));
      m.drawLine(new c.Point2(px, py), new c.Point2(nx, ny), new c.Vec3(v, v, v), depth === 0 ? 2 : 1, c.LINE_AA);
      if (depth < 2 && i > 0 && rng.uniform() < 0.45) {
        const side = rng.uniform() < 0.5 ? 1 : -1;
        needle(nx, ny, a + side * rng.range(0.9, 1.2), len * rng.range(0.2, 0.45) * (1 - i / steps), depth + 1, bright * 0.8);
      }
      px = nx;
      py = ny;
    }
  };
  const seeds = Math.round((size * size) / 90);
  for (let i = 0; i < seeds; i++) {
    needle(rng.range(0, R), rng.range(0, R), rng.range(0, 2 * Math.PI), rng.range(0.12, 0.4) * R, 0, rng.range(0.55, 1));
  }
  // sparkles: small bright specks
  for (let i = 0; i < seeds * 3; i++) {
    const v = Math.round(rng.range(120, 255));
    m.drawCircle(new c.Point2(rng.range(0, R), rng.range(0, R)), Math.round(rng.range(1, sup)), new c.Vec3(v, v, v), -1, c.LINE_AA);
  }
  const small = m.resize(new c.Size(size, size), 0, 0, c.INTER_AREA);
  const crystals = u8Of(small);
  const p2 = pow2AtLeast(size);
  const haze = plasma(rng, p2, 1.6);
  const tex = new Float32Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const v = 0.12 + 0.33 * haze[y * p2 + x]! + 1.1 * (crystals[y * size + x]! / 255);
      tex[y * size + x] = v > 1 ? 1 : v;
    }
  }
  return gaussianBlur(tex, { height: size, width: size, channels: 1 }, 0.35);
}

function textures(seed: number, size: number): Float32Array[] {
  const key = `${seed}:${size}`;
  let t = bank.get(key);
  if (!t) {
    t = Array.from({ length: FROST_TEXTURES }, (_, k) => frostTexture(new DataRng(seed, hash32('frost-texture'), k), size));
    if (bank.size > 16) bank.clear();
    bank.set(key, t);
  }
  return t;
}

export const frost: Corruption = {
  name: 'frost',
  random: true,
  apply(batch, severity, opts) {
    const [keep, amount] = FROST[level(severity, this.name)]!;
    const size = Math.max(32, 2 * Math.max(batch.height, batch.width));
    const bankOf = textures(opts?.seed ?? 0, size);
    return perImage(this.name, batch, opts, (x, rng, shape) => {
      const { height: H, width: W, channels: C } = shape;
      const tex = bankOf[rng.int(FROST_TEXTURES)]!;
      const oy = rng.int(size - H + 1);
      const ox = rng.int(size - W + 1);
      for (let y = 0; y < H; y++) {
        for (let xx = 0; xx < W; xx++) {
          const f = amount * tex[(y + oy) * size + xx + ox]!;
          for (let ch = 0; ch < C; ch++) {
            const k = (y * W + xx) * C + ch;
            x[k] = keep * x[k]! + f * (C === 3 ? FROST_TINT[ch]! : 1);
          }
        }
      }
      return x;
    });
  },
};
