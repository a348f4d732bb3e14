// Cast between float types: dx = dy cast back to x's type. (Casts to integers carry no gradient.)
import { A } from '../../onnx/builder.ts';
import { ONNX_DTYPE } from '../../onnx/codec.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Cast',
  backward(c) {
    const x = c.node.inputs[0]!;
    const dt = c.dtype(x);
    if (dt === c.dtype(c.node.outputs[0]!)) return [c.gy[0]!];
    return [c.b.op1('Cast', [c.gy[0]!], { to: A.int(ONNX_DTYPE[dt]) })];
  },
};
