// Mul (broadcasting): da = dy * b, db = dy * a, unbroadcast.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Mul',
  backward(c) {
    const [a, b] = c.node.inputs as [string, string];
    const gy = c.gy[0]!;
    return [
      c.needs[0] ? c.unbroadcast(c.b.op1('Mul', [gy, b]), a) : null,
      c.needs[1] ? c.unbroadcast(c.b.op1('Mul', [gy, a]), b) : null,
    ];
  },
};
