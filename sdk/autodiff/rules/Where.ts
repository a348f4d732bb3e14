// Where(cond, a, b): da = dy where cond, db = dy elsewhere, each unbroadcast; cond gets none.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Where',
  nonDiffInputs: [0],
  backward(c) {
    const [cond, a, b] = c.node.inputs as [string, string, string];
    const gy = c.gy[0]!;
    const zero = c.scalar(0, c.node.outputs[0]!);
    return [
      null,
      c.needs[1] ? c.unbroadcast(c.b.op1('Where', [cond, gy, zero]), a) : null,
      c.needs[2] ? c.unbroadcast(c.b.op1('Where', [cond, zero, gy]), b) : null,
    ];
  },
};
