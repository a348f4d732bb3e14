// Floor: straight-through estimator, dx = dy (the true derivative is 0 almost everywhere).
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Floor',
  backward: (c) => [c.gy[0]!],
};
