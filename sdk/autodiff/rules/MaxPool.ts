// MaxPool: the forward pool is recomputed with its Indices output (positions in the flattened
// input) and dY is scatter-added there (overlapping windows may pick one element several times).
// Needs opset 16 (ScatterElements reduction).
import { A } from '../../onnx/builder.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'MaxPool',
  backward(c) {
    const { b, node } = c;
    if (c.opset < 16) c.fail(`MaxPool's gradient needs opset 16 or later (ScatterElements with reduction); the model imports ${c.opset}`);
    if (c.gy[1]) c.fail('the Indices output of MaxPool carries no gradient');
    const x = node.inputs[0]!;
    const { storage_order: _s, ...attrs } = node.attrs;
    const [, idx] = b.op('MaxPool', [x], attrs, { outputs: 2, name: `${node.name}.grad_indices` }) as [string, string];
    const flatZeros = b.op1('Expand', [c.scalar(0, x), b.op1('Reshape', [b.op1('Size', [x]), c.ints([1])])]);
    const scattered = b.op1('ScatterElements', [flatZeros, b.op1('Reshape', [idx, c.ints([-1])]), b.op1('Reshape', [c.gy[0]!, c.ints([-1])])], {
      axis: A.int(0), reduction: A.str('add'),
    }, { name: `${node.name}.grad_input` });
    return [b.op1('Reshape', [scattered, c.shapeOf(x)])];
  },
};
