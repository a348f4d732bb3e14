// ReduceMean: dx = dy expanded to x's shape / (number of elements averaged), counted at run time.
import { A } from '../../onnx/builder.ts';
import { ONNX_DTYPE } from '../../onnx/codec.ts';
import { attrInt, reduceAxes } from './attrs.ts';
import { expandReduced } from './ReduceSum.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'ReduceMean',
  nonDiffInputs: [1],
  backward(c) {
    const { b } = c;
    const x = c.node.inputs[0]!;
    const y = c.node.outputs[0]!;
    const g = expandReduced(c);
    const axes = reduceAxes(c);
    if ((!axes || axes.length === 0) && attrInt(c.node, 'noop_with_empty_axes', 0)) return [g];
    const count = b.op1('Div', [b.op1('Size', [x]), b.op1('Size', [y])]);
    return [b.op1('Div', [g, b.op1('Cast', [count], { to: A.int(ONNX_DTYPE[c.dtype(x)]) })])];
  },
};
