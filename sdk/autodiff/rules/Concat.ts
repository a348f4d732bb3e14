// Concat: dy split back into the inputs' extents along the axis (static extents).
import { A } from '../../onnx/builder.ts';
import { attrInt } from './attrs.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Concat',
  backward(c) {
    const ins = c.node.inputs;
    if (ins.length === 1) return [c.gy[0]!];
    const r = c.rank(ins[0]!);
    let axis = attrInt(c.node, 'axis', 0);
    if (axis < 0) axis += r;
    const sizes = ins.map((x) => c.shape(x)[axis]!);
    return c.b.op('Split', [c.gy[0]!, c.ints(sizes)], { axis: A.int(axis) }, { outputs: ins.length });
  },
};
