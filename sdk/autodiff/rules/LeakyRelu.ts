// LeakyRelu: dx = dy where x > 0, else alpha * dy.
import { attrFloat } from './attrs.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'LeakyRelu',
  backward(c) {
    const x = c.node.inputs[0]!;
    const gy = c.gy[0]!;
    const alpha = attrFloat(c.node, 'alpha', 0.01);
    const scaled = c.b.op1('Mul', [gy, c.scalar(alpha, x)]);
    return [c.b.op1('Where', [c.b.op1('Greater', [x, c.scalar(0, x)]), gy, scaled])];
  },
};
