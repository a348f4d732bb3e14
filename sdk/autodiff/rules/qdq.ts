// Shared pieces of the QuantizeLinear / DequantizeLinear rules: broadcasting a per-tensor or
// per-axis scale/zero point against x, and summing a gradient back to the scale's shape.
import { A } from '../../onnx/builder.ts';
import { ONNX_DTYPE } from '../../onnx/codec.ts';
import { attrInt } from './attrs.ts';
import type { RuleContext } from './types.ts';

export interface QParams {
  /** Scale reshaped to broadcast against x. */
  readonly s: string;
  /** Zero point as a float of x's type, broadcastable, or undefined when absent. */
  readonly zp: string | undefined;
  /** Sums a gradient shaped like x down to the scale's shape. */
  toScale(g: string): string;
}

export function qparams(c: RuleContext, x: string, scale: string, zp: string | undefined, floatLike: string): QParams {
  const { b, node } = c;
  if (attrInt(node, 'block_size', 0) > 0) c.fail('blocked quantization (block_size) has no gradient rule; use per-tensor or per-axis scales');
  const rank = c.rank(x);
  const sRank = c.rank(scale);
  let axis = attrInt(node, 'axis', 1);
  if (axis < 0) axis += rank;
  const perAxis = sRank === 1 && c.shape(scale)[0] !== 1 || (sRank === 1 && rank > 0 && c.shape(x)[axis] === 1);
  const bshape = Array.from({ length: rank }, (_, i) => (i === axis ? -1 : 1));
  const shaped = (v: string): string => (perAxis ? b.op1('Reshape', [v, c.ints(bshape)]) : v);
  const fto = A.int(ONNX_DTYPE[c.dtype(floatLike)]);
  const zpF = zp ? shaped(b.op1('Cast', [zp], { to: fto })) : undefined;
  const all = Array.from({ length: rank }, (_, i) => i);
  const others = all.filter((i) => i !== axis);
  return {
    s: shaped(scale),
    zp: zpF,
    toScale: (g) => {
      if (perAxis) return c.reduceSum(g, others, false);
      const r = all.length ? c.reduceSum(g, all, false) : g;
      return sRank === 0 ? r : b.op1('Reshape', [r, c.shapeOf(scale)]);
    },
  };
}
