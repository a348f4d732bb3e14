// Exp: dx = dy * y.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Exp',
  backward: (c) => [c.b.op1('Mul', [c.gy[0]!, c.node.outputs[0]!])],
};
