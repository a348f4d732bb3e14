// Add (broadcasting): da = dy, db = dy, each summed over the axes it was broadcast along.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Add',
  backward(c) {
    const [a, b] = c.node.inputs as [string, string];
    const gy = c.gy[0]!;
    return [c.needs[0] ? c.unbroadcast(gy, a) : null, c.needs[1] ? c.unbroadcast(gy, b) : null];
  },
};
