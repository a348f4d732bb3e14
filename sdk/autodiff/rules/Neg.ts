// Neg: dx = -dy.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Neg',
  backward: (c) => [c.b.op1('Neg', [c.gy[0]!])],
};
