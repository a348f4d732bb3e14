// Gemm Y = alpha * A' B' + beta * C with A' = transA ? A^T : A, B' likewise. The input gradients
// are Gemms of dY with the other operand, transposed to each input's own layout; dC = beta * dY
// summed over C's broadcast axes.
import { A } from '../../onnx/builder.ts';
import type { Attribute } from '../../onnx/types.ts';
import { attrFloat, attrInt } from './attrs.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Gemm',
  backward(c) {
    const { b, node } = c;
    const [a, bm, cc] = node.inputs as [string, string, string | undefined];
    const gy = c.gy[0]!;
    const alpha = attrFloat(node, 'alpha', 1);
    const beta = attrFloat(node, 'beta', 1);
    const tA = attrInt(node, 'transA', 0);
    const tB = attrInt(node, 'transB', 0);
    const gemm = (p: string, q: string, ta: number, tb: number): string => {
      const attrs: Record<string, Attribute> = {};
      if (ta) attrs['transA'] = A.int(1);
      if (tb) attrs['transB'] = A.int(1);
      if (alpha !== 1) attrs['alpha'] = A.float(alpha);
      return b.op1('Gemm', [p, q], attrs);
    };
    let ga: string | null = null;
    let gb: string | null = null;
    if (c.needs[0]) ga = tA ? (tB ? gemm(bm, gy, 1, 1) : gemm(bm, gy, 0, 1)) : (tB ? gemm(gy, bm, 0, 0) : gemm(gy, bm, 0, 1));
    if (c.needs[1]) gb = tB ? (tA ? gemm(gy, a, 1, 1) : gemm(gy, a, 1, 0)) : (tA ? gemm(a, gy, 0, 0) : gemm(a, gy, 1, 0));
    let gc: string | null = null;
    if (cc && c.needs[2]) {
      const scaled = beta === 1 ? gy : b.op1('Mul', [gy, c.scalar(beta, cc)]);
      gc = c.unbroadcast(scaled, cc);
    }
    return [ga, gb, gc];
  },
};
