// DequantizeLinear y = (q - zp) * s: dq = dy * s (a float gradient for the integer q, consumed by
// QuantizeLinear's straight-through rule), ds = dy * (q - zp) summed to the scale's shape.
import { A } from '../../onnx/builder.ts';
import { ONNX_DTYPE } from '../../onnx/codec.ts';
import { qparams } from './qdq.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'DequantizeLinear',
  nonDiffInputs: [2],
  backward(c) {
    const { b, node } = c;
    const [q, scale, zp] = node.inputs as [string, string, string | undefined];
    const y = node.outputs[0]!;
    const gy = c.gy[0]!;
    const p = qparams(c, q, scale, zp || undefined, y);
    const gq = c.needs[0] ? b.op1('Mul', [gy, p.s]) : null;
    let gs: string | null = null;
    if (c.needs[1]) {
      const qf = b.op1('Cast', [q], { to: A.int(ONNX_DTYPE[c.dtype(y)]) });
      const centered = p.zp ? b.op1('Sub', [qf, p.zp]) : qf;
      gs = p.toScale(b.op1('Mul', [gy, centered]));
    }
    return [gq, gs, null];
  },
};
