// HardSwish y = x * max(0, min(1, x/6 + 1/2)): dy/dx = 0 below -3, 1 above 3, x/3 + 1/2 between.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'HardSwish',
  backward(c) {
    const { b } = c;
    const x = c.node.inputs[0]!;
    const mid = b.op1('Add', [b.op1('Mul', [x, c.scalar(1 / 3, x)]), c.scalar(0.5, x)]);
    const upper = b.op1('Where', [b.op1('Greater', [x, c.scalar(3, x)]), c.scalar(1, x), mid]);
    const d = b.op1('Where', [b.op1('Less', [x, c.scalar(-3, x)]), c.scalar(0, x), upper]);
    return [b.op1('Mul', [c.gy[0]!, d])];
  },
};
