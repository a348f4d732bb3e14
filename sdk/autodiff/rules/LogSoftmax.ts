// LogSoftmax along an axis (opset 13 semantics): dx = dy - exp(y) * sum(dy, axis).
import { attrInt } from './attrs.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'LogSoftmax',
  backward(c) {
    const { b } = c;
    const y = c.node.outputs[0]!;
    const axis = attrInt(c.node, 'axis', -1);
    const r = c.rank(y);
    const s = c.reduceSum(c.gy[0]!, [axis < 0 ? axis + r : axis], true);
    return [b.op1('Sub', [c.gy[0]!, b.op1('Mul', [b.op1('Exp', [y]), s])])];
  },
};
