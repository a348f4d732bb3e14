// zoom_blur: the average of the image and copies of it zoomed about the centre by factors
// 1, 1 + step, ... (a zoom during exposure), each zoom one OpenCV warpAffine.
import { centreZoom, level, perImage, type Corruption } from './common.ts';

/** [largest extra zoom, step] per severity 1-5: zooms 1, 1+step, ..., 1+max (CIFAR-10-C's table:
 *  numpy arange(1, 1.06, 0.01) ... arange(1, 1.26, 0.01)). Dimensionless: no size scaling. */
export const ZOOM_BLUR = [[0.05, 0.01], [0.1, 0.01], [0.15, 0.01], [0.2, 0.01], [0.25, 0.01]] as const;

export const zoomFactors = (severity: number): number[] => {
  const [max, step] = ZOOM_BLUR[severity - 1]!;
  const n = Math.round(max / step);
  return Array.from({ length: n + 1 }, (_, i) => 1 + i * step);
};

export const zoomBlur: Corruption = {
  name: 'zoom_blur',
  random: false,
  apply(batch, severity, opts) {
    level(severity, this.name);
    const zooms = zoomFactors(severity);
    return perImage(this.name, batch, opts, (x, _rng, shape) => {
      const acc = new Float32Array(x);
      for (const z of zooms) {
        const y = centreZoom(x, shape, z);
        for (let k = 0; k < acc.length; k++) acc[k] = acc[k]! + y[k]!;
      }
      const n = zooms.length + 1;
      for (let k = 0; k < acc.length; k++) acc[k] = acc[k]! / n;
      return acc;
    });
  },
};
