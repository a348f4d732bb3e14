// Pow z = x^e (broadcasting): dx = dy * e * x^(e-1); de = dy * z * ln x (defined for x > 0).
import { A } from '../../onnx/builder.ts';
import { ONNX_DTYPE } from '../../onnx/codec.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Pow',
  backward(c) {
    const { b } = c;
    const [x, e] = c.node.inputs as [string, string];
    const z = c.node.outputs[0]!;
    const gy = c.gy[0]!;
    let gx: string | null = null;
    if (c.needs[0]) {
      const eX = c.dtype(e) === c.dtype(x) ? e : b.op1('Cast', [e], { to: A.int(ONNX_DTYPE[c.dtype(x)]) });
      const pm1 = b.op1('Pow', [x, b.op1('Sub', [eX, c.scalar(1, x)])]);
      gx = c.unbroadcast(b.op1('Mul', [gy, b.op1('Mul', [eX, pm1])]), x);
    }
    const ge = c.needs[1] ? c.unbroadcast(b.op1('Mul', [gy, b.op1('Mul', [z, b.op1('Log', [x])])]), e) : null;
    return [gx, ge];
  },
};
