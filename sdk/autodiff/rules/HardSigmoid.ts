// HardSigmoid y = max(0, min(1, alpha x + beta)): dx = alpha dy inside the linear range.
import { attrFloat } from './attrs.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'HardSigmoid',
  backward(c) {
    const { b } = c;
    const x = c.node.inputs[0]!;
    const alpha = attrFloat(c.node, 'alpha', 0.2);
    const beta = attrFloat(c.node, 'beta', 0.5);
    const v = b.op1('Add', [b.op1('Mul', [x, c.scalar(alpha, x)]), c.scalar(beta, x)]);
    const inside = b.op1('And', [b.op1('Greater', [v, c.scalar(0, x)]), b.op1('Less', [v, c.scalar(1, x)])]);
    return [b.op1('Where', [inside, b.op1('Mul', [c.gy[0]!, c.scalar(alpha, x)]), c.scalar(0, x)])];
  },
};
