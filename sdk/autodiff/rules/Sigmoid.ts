// Sigmoid: dx = dy * y * (1 - y).
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Sigmoid',
  backward(c) {
    const y = c.node.outputs[0]!;
    const oneMinus = c.b.op1('Sub', [c.scalar(1, y), y]);
    return [c.b.op1('Mul', [c.gy[0]!, c.b.op1('Mul', [y, oneMinus])])];
  },
};
