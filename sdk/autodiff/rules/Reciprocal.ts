// Reciprocal y = 1/x: dx = -dy * y^2.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Reciprocal',
  backward(c) {
    const y = c.node.outputs[0]!;
    return [c.b.op1('Neg', [c.b.op1('Mul', [c.gy[0]!, c.b.op1('Mul', [y, y])])])];
  },
};
