// Sum (variadic, broadcasting): every input gets dy, unbroadcast to its shape.
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Sum',
  backward: (c) => c.node.inputs.map((x, i) => (c.needs[i] ? c.unbroadcast(c.gy[0]!, x) : null)),
};
