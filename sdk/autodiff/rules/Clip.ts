// Clip(x, min, max): dx = dy where min <= x <= max; d min / d max collect dy where x fell below /
// above them (summed to the bound's scalar shape).
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Clip',
  backward(c) {
    const { b, node } = c;
    const x = node.inputs[0]!;
    const lo = node.inputs[1] || undefined;
    const hi = node.inputs[2] || undefined;
    if (node.attrs['min'] || node.attrs['max']) c.fail('min/max given as attributes (opset < 11); re-export at opset 13 or later');
    const gy = c.gy[0]!;
    const zero = c.scalar(0, x);
    const below = lo ? b.op1('Less', [x, lo]) : undefined;
    const above = hi ? b.op1('Greater', [x, hi]) : undefined;
    const out = below && above ? b.op1('Or', [below, above]) : (below ?? above)!;
    const all = Array.from({ length: c.rank(x) }, (_, i) => i);
    const toScalar = (v: string): string => (all.length ? c.reduceSum(v, all, false) : v);
    return [
      c.needs[0] ? b.op1('Where', [out, zero, gy]) : null,
      c.needs[1] && below ? toScalar(b.op1('Where', [below, gy, zero])) : null,
      c.needs[2] && above ? toScalar(b.op1('Where', [above, gy, zero])) : null,
    ];
  },
};
