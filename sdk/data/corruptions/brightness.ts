// brightness: raises the value (V of HSV) by `delta`, clipped; hue and saturation stay. RGB goes
// through OpenCV's float RGB<->HSV conversion, the whole batch as one tall image per call; gray
// images are their own V.
import { cv, f32Of, matFromF32 } from '../cv.ts';
import { level, storeU8, type Corruption } from './common.ts';

/** Added value V, severities 1-5 (CIFAR-10-C's table). */
export const BRIGHTNESS = [0.05, 0.1, 0.15, 0.2, 0.3] as const;

const CHUNK = 512;

export const brightness: Corruption = {
  name: 'brightness',
  random: false,
  apply(batch, severity) {
    const delta = BRIGHTNESS[level(severity, this.name)]!;
    const { height: H, width: W, channels: C } = batch;
    const per = H * W * C;
    const out = new Uint8Array(batch.images.length);
    const c = cv();
    for (let s = 0; s < batch.count; s += CHUNK) {
      const n = Math.min(CHUNK, batch.count - s);
      const src = batch.images.subarray(s * per, (s + n) * per);
      const x = new Float32Array(src.length);
      for (let k = 0; k < x.length; k++) x[k] = src[k]! / 255;
      let y: Float32Array;
      if (C === 1) {
        for (let k = 0; k < x.length; k++) x[k] = Math.min(1, x[k]! + delta);
        y = x;
      } else {
        const hsv = f32Of(matFromF32(x, n * H, W, 3).cvtColor(c.COLOR_RGB2HSV));
        for (let k = 2; k < hsv.length; k += 3) hsv[k] = Math.min(1, hsv[k]! + delta);
        y = f32Of(matFromF32(hsv, n * H, W, 3).cvtColor(c.COLOR_HSV2RGB));
      }
      storeU8(y, out, s * per);
    }
    return out;
  },
};
