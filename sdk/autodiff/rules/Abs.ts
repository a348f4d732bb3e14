// Abs: dx = dy * sign(x) (0 at x = 0).
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Abs',
  backward: (c) => [c.b.op1('Mul', [c.gy[0]!, c.b.op1('Sign', [c.node.inputs[0]!])])],
};
