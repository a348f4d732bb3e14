// Sub (broadcasting): da = dy, db = -dy, unbroadcast.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Sub',
  backward(c) {
    const [a, b] = c.node.inputs as [string, string];
    const gy = c.gy[0]!;
    return [c.needs[0] ? c.unbroadcast(gy, a) : null, c.needs[1] ? c.unbroadcast(c.b.op1('Neg', [gy]), b) : null];
  },
};
