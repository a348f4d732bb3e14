// Split: dx = the output gradients concatenated along the axis (zeros for outputs without one).
import { A } from '../../onnx/builder.ts';
import { attrInt } from './attrs.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Split',
  nonDiffInputs: [1],
  backward(c) {
    const axis = attrInt(c.node, 'axis', 0);
    const parts = c.node.outputs.map((o, i) => c.gy[i] ?? c.zerosLike(o));
    return [parts.length === 1 ? parts[0]! : c.b.op1('Concat', parts, { axis: A.int(axis) })];
  },
};
