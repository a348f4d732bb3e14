// Expand: dx = dy summed over the broadcast axes.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Expand',
  nonDiffInputs: [1],
  backward: (c) => [c.unbroadcast(c.gy[0]!, c.node.inputs[0]!)],
};
