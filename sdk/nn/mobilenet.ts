// A small MobileNet-V2-style net (Sandler et al. 2018) sized for 28x28 grayscale: inverted
// residual blocks (1x1 expansion, depthwise 3x3 with group = channels, linear 1x1 bottleneck),
// BN after every conv, ReLU6 as Clip, residual adds where input and output shapes match.
import type { Act, Layers } from './layers.ts';

/** One stage: expansion t, output channels c, repeats n, first stride s. */
export interface IrStage {
  readonly t: number;
  readonly c: number;
  readonly n: number;
  readonly s: number;
}

export interface MobileNetOptions {
  readonly stemChannels?: number;
  readonly stages?: readonly IrStage[];
  readonly lastChannels?: number;
}

/** 28x28 -> 28 (16) -> 14 (24) -> 7 (32) -> 7 (64) -> 1x1 conv to 256: about 1e7 MACs, 0.13 M parameters. */
export const DEFAULT_STAGES: readonly IrStage[] = [
  { t: 1, c: 16, n: 1, s: 1 },
  { t: 6, c: 24, n: 2, s: 2 },
  { t: 6, c: 32, n: 3, s: 2 },
  { t: 6, c: 64, n: 2, s: 1 },
];

function invertedResidual(L: Layers, x: Act, name: string, t: number, out: number, stride: number): Act {
  let y = x;
  const hidden = x.c * t;
  if (t !== 1) y = L.relu6(L.bn(L.conv(y, `${name}.expand`, { out: hidden, k: 1 }), `${name}.expand_bn`), `${name}.expand_relu`);
  y = L.relu6(L.bn(L.conv(y, `${name}.dw`, { out: hidden, k: 3, stride, groups: hidden }), `${name}.dw_bn`), `${name}.dw_relu`);
  y = L.bn(L.conv(y, `${name}.project`, { out, k: 1 }), `${name}.project_bn`);
  return stride === 1 && x.c === out ? L.add(y, x, `${name}.add`) : y;
}

export function mobilenet(L: Layers, x: Act, numClasses: number, logits: string, o: MobileNetOptions = {}): Act {
  const stem = o.stemChannels ?? 16;
  let y = L.relu6(L.bn(L.conv(x, 'stem.conv', { out: stem, k: 3 }), 'stem.bn'), 'stem.relu');
  (o.stages ?? DEFAULT_STAGES).forEach((st, i) => {
    for (let b = 0; b < st.n; b++) y = invertedResidual(L, y, `block${i + 1}.${b}`, st.t, st.c, b === 0 ? st.s : 1);
  });
  const last = o.lastChannels ?? 256;
  y = L.relu6(L.bn(L.conv(y, 'head.conv', { out: last, k: 1 }), 'head.bn'), 'head.relu');
  return L.linear(L.globalPool(y, 'pool'), 'fc', numClasses, logits);
}
