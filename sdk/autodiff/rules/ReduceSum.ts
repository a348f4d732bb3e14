// ReduceSum: dx = dy (with reduced axes restored) expanded to x's shape.
import { attrInt, normAxes, reduceAxes } from './attrs.ts';
import type { GradRule, RuleContext } from './types.ts';

/** dy of a Reduce* node broadcast back to x's shape (shared with ReduceMean). */
export function expandReduced(c: RuleContext): string {
  const x = c.node.inputs[0]!;
  const axes = reduceAxes(c);
  const keep = attrInt(c.node, 'keepdims', 1);
  const noop = attrInt(c.node, 'noop_with_empty_axes', 0);
  const gy = c.gy[0]!;
  if ((!axes || axes.length === 0) && noop) return gy;
  let g = gy;
  if (!keep && axes && axes.length > 0) g = c.b.op1('Unsqueeze', [gy, c.ints(normAxes(axes, c.rank(x)).sort((p, q) => p - q))]);
  return c.b.op1('Expand', [g, c.shapeOf(x)]);
}

export const rule: GradRule = {
  opType: 'ReduceSum',
  nonDiffInputs: [1],
  backward: (c) => [expandReduced(c)],
};
