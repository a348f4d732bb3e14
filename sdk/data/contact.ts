// Contact sheets: one image across the 15 corruptions (rows) and severities 1-5 (columns), with
// the clean image in the first column, upscaled (nearest neighbour, so pixels stay honest) and
// labelled; returned as PNG bytes. `ttaq corrupt --contact-sheet` writes them.
import { cv, imageToBgrMat } from './cv.ts';
import { CORRUPTIONS, corruptImages } from './corruptions/index.ts';

export interface ContactSheetOptions {
  /** Upscaling factor of each tile (default: to about 112 px). */
  readonly scale?: number;
  readonly seed?: number;
  readonly corruptions?: readonly string[];
}

/** A labelled grid PNG of `image` (HWC uint8, 1 or 3 channels) under every corruption and severity. */
export function contactSheet(image: Uint8Array, height: number, width: number, channels: number, opts: ContactSheetOptions = {}): Uint8Array {
  const c = cv();
  const names = opts.corruptions ?? CORRUPTIONS;
  const scale = opts.scale ?? Math.max(1, Math.round(112 / Math.max(height, width)));
  const tileH = height * scale;
  const tileW = width * scale;
  const gap = 4;
  const left = 150;
  const top = 24;
  const cols = 6;
  const sheetW = left + cols * (tileW + gap);
  const sheetH = top + names.length * (tileH + gap);
  const sheet = new c.Mat(sheetH, sheetW, c.CV_8UC3, [255, 255, 255]);
  const one = { count: 1, height, width, channels, images: image };
  const heads = ['clean', 'severity 1', '2', '3', '4', '5'];
  heads.forEach((h, j) => sheet.putText(h, new c.Point2(left + j * (tileW + gap) + 4, 17), c.FONT_HERSHEY_SIMPLEX, 0.45, new c.Vec3(0, 0, 0), 1, c.LINE_AA));
  names.forEach((name, i) => {
    const y = top + i * (tileH + gap);
    sheet.putText(name, new c.Point2(4, y + Math.round(tileH / 2) + 5), c.FONT_HERSHEY_SIMPLEX, 0.45, new c.Vec3(0, 0, 0), 1, c.LINE_AA);
    for (let j = 0; j < cols; j++) {
      const bytes = j === 0 ? image : corruptImages(one, name, j, { seed: opts.seed ?? 0 });
      const tile = imageToBgrMat(bytes, height, width, channels).resize(new c.Size(tileW, tileH), 0, 0, c.INTER_NEAREST);
      tile.copyTo(sheet.getRegion(new c.Rect(left + j * (tileW + gap), y, tileW, tileH)));
    }
  });
  return new Uint8Array(c.imencode('.png', sheet));
}
