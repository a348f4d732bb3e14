// Identity: dx = dy.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Identity',
  backward: (c) => [c.gy[0]!],
};
