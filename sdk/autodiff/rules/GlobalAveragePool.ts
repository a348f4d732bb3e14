// GlobalAveragePool: dx = dy broadcast over the spatial axes / their (static) extent.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'GlobalAveragePool',
  backward(c) {
    const x = c.node.inputs[0]!;
    const n = c.shape(x).slice(2).reduce((a, v) => a * v, 1);
    const spread = c.b.op1('Expand', [c.gy[0]!, c.shapeOf(x)]);
    return [c.b.op1('Div', [spread, c.scalar(n, x)])];
  },
};
