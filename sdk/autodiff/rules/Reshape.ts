// Reshape: dx = dy reshaped to x's shape (taken at run time, so any batch size works).
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Reshape',
  nonDiffInputs: [1],
  backward: (c) => [c.b.op1('Reshape', [c.gy[0]!, c.shapeOf(c.node.inputs[0]!)])],
};
