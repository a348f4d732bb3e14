// Div y = a / b (broadcasting): da = dy / b, db = -dy * y / b, unbroadcast.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Div',
  backward(c) {
    const [a, b] = c.node.inputs as [string, string];
    const y = c.node.outputs[0]!;
    const ga = c.b.op1('Div', [c.gy[0]!, b]);
    return [
      c.needs[0] ? c.unbroadcast(ga, a) : null,
      c.needs[1] ? c.unbroadcast(c.b.op1('Neg', [c.b.op1('Mul', [ga, y])]), b) : null,
    ];
  },
};
