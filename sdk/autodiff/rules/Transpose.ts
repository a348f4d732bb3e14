// Transpose: dx = dy transposed by the inverse permutation.
import { A } from '../../onnx/builder.ts';
import { attrInts } from './attrs.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Transpose',
  backward(c) {
    const r = c.rank(c.node.inputs[0]!);
    const perm = attrInts(c.node, 'perm') ?? Array.from({ length: r }, (_, i) => r - 1 - i);
    const inv = new Array<number>(r);
    perm.forEach((p, i) => { inv[p] = i; });
    return [c.b.op1('Transpose', [c.gy[0]!], { perm: A.ints(inv) })];
  },
};
