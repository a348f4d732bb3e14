// MatMul (numpy semantics, batched and broadcast): dA = dY B^T, dB = A^T dY over the last two
// axes, then summed over broadcast batch axes. 1-D operands are lifted to matrices first.
import { A } from '../../onnx/builder.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'MatMul',
  backward(c) {
    const { b } = c;
    const [a, bm] = c.node.inputs as [string, string];
    const ra = c.rank(a);
    const rb = c.rank(bm);
    let gy = c.gy[0]!;
    const a2 = ra === 1 ? b.op1('Unsqueeze', [a, c.ints([0])]) : a;
    const b2 = rb === 1 ? b.op1('Unsqueeze', [bm, c.ints([1])]) : bm;
    if (ra === 1 && rb === 1) gy = b.op1('Reshape', [gy, c.ints([1, 1])]);
    else if (ra === 1) gy = b.op1('Unsqueeze', [gy, c.ints([-2])]);
    else if (rb === 1) gy = b.op1('Unsqueeze', [gy, c.ints([-1])]);
    const t = (x: string, r: number): string => {
      const perm = Array.from({ length: r }, (_, i) => i);
      [perm[r - 2], perm[r - 1]] = [perm[r - 1]!, perm[r - 2]!];
      return b.op1('Transpose', [x], { perm: A.ints(perm) });
    };
    const ry = Math.max(ra, rb, 2);
    // Sum over leading axes the operand did not have, and over its broadcast (size-1) batch axes.
    const down = (g: string, x: string, rx: number, xShape: readonly number[]): string => {
      const lead = ry - Math.max(rx, 2);
      const yShape = c.shape(c.node.outputs[0]!);
      const yFull = ra === 1 || rb === 1 ? [...yShape.slice(0, ry - 2), 0, 0] : yShape;
      const axes: number[] = [];
      for (let i = 0; i < lead; i++) axes.push(i);
      const xs = rx === 1 ? [] : xShape.slice(0, -2);
      for (let i = 0; i < xs.length; i++) if (xs[i] === 1 && yFull[lead + i] !== 1) axes.push(lead + i);
      const r = axes.length ? c.reduceSum(g, axes, true) : g;
      return axes.length || rx === 1 ? b.op1('Reshape', [r, c.shapeOf(x)]) : r;
    };
    const ga = c.needs[0] ? down(b.op1('MatMul', [gy, t(b2, Math.max(rb, 2))]), a, ra, c.shape(a)) : null;
    const gb = c.needs[1] ? down(b.op1('MatMul', [t(a2, Math.max(ra, 2)), gy]), bm, rb, c.shape(bm)) : null;
    return [ga, gb];
  },
};
