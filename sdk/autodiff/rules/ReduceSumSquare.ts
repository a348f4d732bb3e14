// ReduceSumSquare: dx = 2·x·dy, dy (with reduced axes restored) broadcast against x inside the Mul.
// One elementwise pass over x, where ReduceSum(Mul(x, x)) costs Expand + two Muls + Sum.
import { attrInt, normAxes, reduceAxes } from './attrs.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'ReduceSumSquare',
  nonDiffInputs: [1],
  backward(c) {
    const x = c.node.inputs[0]!;
    const axes = reduceAxes(c);
    if ((!axes || axes.length === 0) && attrInt(c.node, 'noop_with_empty_axes', 0)) {
      c.fail('noop_with_empty_axes with no axes is not supported; reduce over explicit axes or use Mul(x, x)');
    }
    let g = c.b.op1('Mul', [c.gy[0]!, c.scalar(2, x)]);
    if (!attrInt(c.node, 'keepdims', 1) && axes && axes.length > 0) g = c.b.op1('Unsqueeze', [g, c.ints(normAxes(axes, c.rank(x)).sort((p, q) => p - q))]);
    return [c.b.op1('Mul', [x, g])];
  },
};
