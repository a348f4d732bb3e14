// Relu: dx = dy where x > 0, else 0.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Relu',
  backward(c) {
    const x = c.node.inputs[0]!;
    const zero = c.scalar(0, x);
    return [c.b.op1('Where', [c.b.op1('Greater', [x, zero]), c.gy[0]!, zero])];
  },
};
