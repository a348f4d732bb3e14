// CIFAR-style ResNet-20 (He et al. 2016, section 4.2): a 3x3 stem, three stages of three basic
// blocks with 16/32/64 channels (stride 2 at the start of stages 2 and 3), BN after every conv,
// 1x1-conv + BN projection shortcuts where the shape changes, global average pool, Gemm head.
import type { Act, Layers } from './layers.ts';

export interface ResNetOptions {
  /** Blocks per stage (3 gives ResNet-20: 6n + 2 layers). */
  readonly blocksPerStage?: number;
  readonly widths?: readonly [number, number, number];
}

function basicBlock(L: Layers, x: Act, name: string, out: number, stride: number): Act {
  let y = L.conv(x, `${name}.conv1`, { out, k: 3, stride });
  y = L.relu(L.bn(y, `${name}.bn1`), `${name}.relu1`);
  y = L.bn(L.conv(y, `${name}.conv2`, { out, k: 3 }), `${name}.bn2`);
  let shortcut = x;
  if (stride !== 1 || x.c !== out) {
    shortcut = L.bn(L.conv(x, `${name}.shortcut.conv`, { out, k: 1, stride }), `${name}.shortcut.bn`);
  }
  return L.relu(L.add(y, shortcut, `${name}.add`), `${name}.relu2`);
}

/** Builds the body from `x` to the logits value `logits`. */
export function resnet(L: Layers, x: Act, numClasses: number, logits: string, o: ResNetOptions = {}): Act {
  const n = o.blocksPerStage ?? 3;
  const widths = o.widths ?? [16, 32, 64];
  let y = L.relu(L.bn(L.conv(x, 'stem.conv', { out: widths[0], k: 3 }), 'stem.bn'), 'stem.relu');
  widths.forEach((w, s) => {
    for (let b = 0; b < n; b++) y = basicBlock(L, y, `layer${s + 1}.${b}`, w, s > 0 && b === 0 ? 2 : 1);
  });
  return L.linear(L.globalPool(y, 'pool'), 'fc', numClasses, logits);
}
