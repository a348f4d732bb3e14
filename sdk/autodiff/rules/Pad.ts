// Pad (constant mode): dx = dy with the padding cut off (negative pads, i.e. crops, padded back).
import { A } from '../../onnx/builder.ts';
import { attrString, constInts, normAxes } from './attrs.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Pad',
  nonDiffInputs: [1, 2, 3],
  backward(c) {
    const { b } = c;
    const mode = attrString(c.node, 'mode', 'constant');
    if (mode !== 'constant') c.fail(`Pad mode '${mode}' has no gradient rule; use mode 'constant'`);
    const x = c.node.inputs[0]!;
    const r = c.rank(x);
    const raw = constInts(c, 1, 'pads') ?? c.fail('pads given as an attribute (opset < 11); re-export at opset 13 or later');
    const axes = normAxes(constInts(c, 3, 'axes') ?? Array.from({ length: r }, (_, i) => i), r);
    const pads = new Array<number>(2 * r).fill(0);
    axes.forEach((ax, i) => { pads[ax] = raw[i]!; pads[ax + r] = raw[i + axes.length]!; });
    let g = c.gy[0]!;
    const sAxes: number[] = [];
    const starts: number[] = [];
    const ends: number[] = [];
    for (let ax = 0; ax < r; ax++) {
      const lo = Math.max(pads[ax]!, 0);
      const hi = Math.max(pads[ax + r]!, 0);
      if (lo === 0 && hi === 0) continue;
      sAxes.push(ax); starts.push(lo); ends.push(hi > 0 ? -hi : Number.MAX_SAFE_INTEGER);
    }
    if (sAxes.length) g = b.op1('Slice', [g, c.ints(starts), c.ints(ends), c.ints(sAxes)]);
    const back = pads.map((p) => Math.max(-p, 0));
    if (back.some((p) => p > 0)) g = b.op1('Pad', [g, c.ints(back)], { mode: A.str('constant') });
    return [g];
  },
};
