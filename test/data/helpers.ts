// Small generated images for the data tests: gray 28x28 (scene luminance and bright objects on
// black, like Fashion-MNIST) and RGB 32x32 synthetic scenes.
import { cv, u8Of } from '../../sdk/data/cv.ts';
import { packLabels, type Dataset } from '../../sdk/data/dataset.ts';
import { syntheticScenes } from '../../sdk/data/synthetic.ts';

export function rgbSet(count: number, size = 32, seed = 0): Dataset {
  return syntheticScenes(count, size, seed);
}

/** Half scene luminance, half textured bright objects on black; labels 0..count-1 mod 10. */
export function graySet(count: number, size = 28): Dataset {
  const c = cv();
  const per = size * size;
  const images = new Uint8Array(count * per);
  const scenes = syntheticScenes(count, size, 100);
  for (let i = 0; i < count; i++) {
    let bytes: Uint8Array;
    if (i % 2 === 0) {
      const m = new c.Mat(Buffer.from(scenes.images.subarray(i * per * 3, (i + 1) * per * 3)), size, size, c.CV_8UC3);
      bytes = u8Of(m.cvtColor(c.COLOR_RGB2GRAY));
    } else {
      const m = new c.Mat(size, size, c.CV_8UC1, 0);
      const cx = Math.round(size / 2 + ((i * 7) % 5) - 2);
      m.drawEllipse(new c.Point2(cx, Math.round(size / 2)), new c.Size(Math.round(size * 0.3), Math.round(size * (0.2 + 0.03 * (i % 4)))), 15 * i, 0, 360, new c.Vec3(200, 200, 200), -1, c.LINE_AA);
      m.drawRectangle(new c.Point2(cx - 3, 6), new c.Point2(cx + 3, size - 6), new c.Vec3(120 + 10 * (i % 5), 0, 0), -1);
      m.drawLine(new c.Point2(4, size - 8), new c.Point2(size - 4, size - 8), new c.Vec3(255, 255, 255), 1);
      bytes = u8Of(m);
    }
    images.set(bytes, i * per);
  }
  return { count, height: size, width: size, channels: 1, images, labels: packLabels(Array.from({ length: count }, (_, i) => i % 10)) };
}
