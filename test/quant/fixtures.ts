// Small generated models and calibration data shared by the quantizer tests.
import { buildNet } from '../../sdk/nn/index.ts';
import type { Model } from '../../sdk/onnx/types.ts';
import type { CalibSet } from '../../sdk/quant/index.ts';

/** A ResNet with one block per stage, widths 4/8/8, on 8x8 single-channel images (random weights). */
export function tinyResNet(seed = 0): Model {
  return buildNet({ arch: 'resnet20', resnet: { blocksPerStage: 1, widths: [4, 8, 8] }, height: 8, width: 8, seed }, 'infer').model;
}

/** Deterministic smooth-ish images with labels 0..9. */
export function tinySet(n = 64, seed = 1): CalibSet {
  const per = 64;
  const images = new Float32Array(n * per);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = (i * 7 + seed) % 10;
    for (let p = 0; p < per; p++) {
      const y = Math.floor(p / 8), x = p % 8;
      images[i * per + p] = Math.sin((x + 1) * (i % 5 + 1) * 0.4 + seed) + Math.cos((y + 2) * ((i * 3) % 7 + 1) * 0.3) * 0.7;
    }
  }
  return { images, dims: [n, 1, 8, 8], labels };
}
