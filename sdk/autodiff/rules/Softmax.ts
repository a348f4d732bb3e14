// Softmax along an axis (opset 13 semantics): dx = y * (dy - sum(dy * y, axis)).
import { attrInt } from './attrs.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Softmax',
  backward(c) {
    const { b } = c;
    const y = c.node.outputs[0]!;
    const axis = attrInt(c.node, 'axis', -1);
    const r = c.rank(y);
    const s = c.reduceSum(b.op1('Mul', [c.gy[0]!, y]), [axis < 0 ? axis + r : axis], true);
    return [b.op1('Mul', [y, b.op1('Sub', [c.gy[0]!, s])])];
  },
};
