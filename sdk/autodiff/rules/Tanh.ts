// Tanh: dx = dy * (1 - y^2).
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Tanh',
  backward(c) {
    const y = c.node.outputs[0]!;
    const d = c.b.op1('Sub', [c.scalar(1, y), c.b.op1('Mul', [y, y])]);
    return [c.b.op1('Mul', [c.gy[0]!, d])];
  },
};
