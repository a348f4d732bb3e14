// Sqrt: dx = dy / (2 y).
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Sqrt',
  backward(c) {
    const y = c.node.outputs[0]!;
    return [c.b.op1('Div', [c.gy[0]!, c.b.op1('Mul', [y, c.scalar(2, y)])])];
  },
};
