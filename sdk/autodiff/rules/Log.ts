// Log: dx = dy / x.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Log',
  backward: (c) => [c.b.op1('Div', [c.gy[0]!, c.node.inputs[0]!])],
};
