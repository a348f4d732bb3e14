// Small synthetic RGB scenes (we ship no RGB dataset): a sky gradient, a sun, hills, a house
// and a tree, with positions and colours drawn from a seed, rendered by OpenCV at 4x and
// area-downsampled. Used for the RGB contact sheet and as RGB test data; the class label is the
// scene's layout variant (0-3: sun left/right x tree left/right) so streams can be tested too.
import { cv, u8Of } from './cv.ts';
import { packLabels, type Dataset } from './dataset.ts';
import { DataRng, hash32 } from './rng.ts';

/** One size x size RGB scene (HWC uint8) and its layout label. */
export function syntheticScene(size: number, seed: number): { image: Uint8Array; label: number } {
  const c = cv();
  const rng = new DataRng(seed, hash32('synthetic-scene'));
  const S = size * 4;
  const m = new c.Mat(S, S, c.CV_8UC3, [0, 0, 0]);
  const label = rng.int(4);
  const sunLeft = (label & 1) === 0;
  const treeLeft = (label & 2) === 0;
  // sky: vertical gradient, drawn as horizontal lines (BGR order inside OpenCV)
  const skyTop = [rng.range(150, 230), rng.range(80, 140), rng.range(20, 60)];
  const skyBottom = [rng.range(230, 255), rng.range(190, 230), rng.range(150, 200)];
  const horizon = Math.round(S * rng.range(0.5, 0.62));
  for (let y = 0; y < horizon; y++) {
    const t = y / horizon;
    const col = skyTop.map((v, i) => Math.round(v + (skyBottom[i]! - v) * t));
    m.drawLine(new c.Point2(0, y), new c.Point2(S - 1, y), new c.Vec3(col[0]!, col[1]!, col[2]!), 1);
  }
  const sunX = Math.round(S * (sunLeft ? rng.range(0.15, 0.3) : rng.range(0.7, 0.85)));
  m.drawCircle(new c.Point2(sunX, Math.round(S * rng.range(0.12, 0.25))), Math.round(S * rng.range(0.07, 0.11)), new c.Vec3(40, Math.round(rng.range(190, 240)), 255), -1, c.LINE_AA);
  // ground and a hill
  const green = new c.Vec3(Math.round(rng.range(20, 60)), Math.round(rng.range(130, 190)), Math.round(rng.range(30, 80)));
  m.drawRectangle(new c.Point2(0, horizon), new c.Point2(S - 1, S - 1), green, -1);
  m.drawEllipse(new c.Point2(Math.round(S * rng.range(0.3, 0.7)), horizon), new c.Size(Math.round(S * 0.45), Math.round(S * 0.12)), 0, 180, 360, new c.Vec3(30, 110, 40), -1, c.LINE_AA);
  // house: red walls, dark roof, blue window
  const hx = Math.round(S * (treeLeft ? rng.range(0.5, 0.6) : rng.range(0.12, 0.22)));
  const hw = Math.round(S * 0.3);
  const hy = horizon - Math.round(S * 0.08);
  const wall = new c.Vec3(Math.round(rng.range(20, 60)), Math.round(rng.range(30, 70)), Math.round(rng.range(170, 230)));
  m.drawRectangle(new c.Point2(hx, hy), new c.Point2(hx + hw, hy + Math.round(S * 0.22)), wall, -1);
  m.drawFillPoly([[new c.Point2(hx - 4, hy), new c.Point2(hx + hw + 4, hy), new c.Point2(hx + hw / 2, hy - Math.round(S * 0.14))]], new c.Vec3(40, 30, 90), c.LINE_AA);
  m.drawRectangle(new c.Point2(hx + Math.round(hw * 0.2), hy + Math.round(S * 0.05)), new c.Point2(hx + Math.round(hw * 0.45), hy + Math.round(S * 0.12)), new c.Vec3(230, 180, 90), -1);
  m.drawRectangle(new c.Point2(hx + Math.round(hw * 0.6), hy + Math.round(S * 0.08)), new c.Point2(hx + Math.round(hw * 0.8), hy + Math.round(S * 0.22)), new c.Vec3(20, 60, 110), -1);
  // tree: brown trunk, green crown
  const tx = Math.round(S * (treeLeft ? rng.range(0.15, 0.3) : rng.range(0.7, 0.85)));
  m.drawRectangle(new c.Point2(tx - 3, horizon - Math.round(S * 0.12)), new c.Point2(tx + 3, horizon + Math.round(S * 0.1)), new c.Vec3(30, 60, 100), -1);
  m.drawCircle(new c.Point2(tx, horizon - Math.round(S * 0.17)), Math.round(S * 0.1), new c.Vec3(40, Math.round(rng.range(120, 170)), 30), -1, c.LINE_AA);
  const small = m.resize(new c.Size(size, size), 0, 0, c.INTER_AREA).cvtColor(c.COLOR_BGR2RGB);
  return { image: new Uint8Array(u8Of(small)), label };
}

/** `count` synthetic scenes (seeds seed, seed + 1, ...) as an RGB dataset with 4 layout classes. */
export function syntheticScenes(count: number, size = 32, seed = 0): Dataset {
  const per = size * size * 3;
  const images = new Uint8Array(count * per);
  const labels: number[] = [];
  for (let i = 0; i < count; i++) {
    const s = syntheticScene(size, seed + i);
    images.set(s.image, i * per);
    labels.push(s.label);
  }
  return { count, height: size, width: size, channels: 3, images, labels: packLabels(labels), classes: ['sun-left tree-left', 'sun-right tree-left', 'sun-left tree-right', 'sun-right tree-right'] };
}
