// QuantizeLinear q = saturate(round(x / s) + zp), differentiated with the straight-through
// estimator: round has derivative 1, saturation a 0/1 mask. The integer output carries a float
// gradient dq (from DequantizeLinear), giving
//   dx = dq * mask / s,   ds = -dq * mask * x / s^2   (summed to the scale's shape).
// With DequantizeLinear's ds = dy * (q - zp) this composes to LSQ's scale gradient:
// (round(x/s) - x/s) inside the range and (qmin - zp) or (qmax - zp) where clipped.
import { intRange } from '../../onnx/tensor.ts';
import { qparams } from './qdq.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'QuantizeLinear',
  nonDiffInputs: [2],
  intOutputsCarryGrad: true,
  backward(c) {
    const { b, node } = c;
    const [x, scale, zp] = node.inputs as [string, string, string | undefined];
    const q = node.outputs[0]!;
    const qdt = c.dtype(q);
    const range = intRange[qdt] ?? c.fail(`quantized type ${qdt} has no integer range for the straight-through mask`);
    const gq = c.gy[0]!;
    const p = qparams(c, x, scale, zp || undefined, x);
    const xs = b.op1('Div', [x, p.s]);
    const r = p.zp ? b.op1('Add', [b.op1('Round', [xs]), p.zp]) : b.op1('Round', [xs]);
    const inside = b.op1('And', [
      b.op1('GreaterOrEqual', [r, c.scalar(range[0], x)]),
      b.op1('LessOrEqual', [r, c.scalar(range[1], x)]),
    ]);
    const gm = b.op1('Where', [inside, gq, c.scalar(0, x)]);
    const gx = c.needs[0] ? b.op1('Div', [gm, p.s]) : null;
    const gs = c.needs[1] ? p.toScale(b.op1('Neg', [b.op1('Div', [b.op1('Mul', [gm, xs]), p.s])])) : null;
    return [gx, gs, null];
  },
};
