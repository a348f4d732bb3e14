// Closed-form backward of BatchNormalization on batch statistics (the 'fused' lowering of ../bn.ts:
// an inference-mode BN node fed with mu = mean(x) and v = mean((x - mu)^2) per channel c over its
// M = N * spatial elements). With inv = 1 / sqrt(v + eps), xhat = (x - mu) * inv, sums over [0, 2]
// of the [N, C, L] view:
//   dB = sum(dy),  dscale = inv * sum(dy * d)  (d = x - mu, the forward's centred value)
//   dx = scale * inv / M * (M * dy - dB - xhat * sum(dy * xhat))
//      = k1 * dy + k2 * x + k0   with per-channel  k1 = scale * inv,  k2 = -k1 * inv^2 * sum(dy * d) / M,
//                                                  k0 = -k1 * dB / M - k2 * mu
// so dx costs two per-channel affine maps and one Add over the activation; the rest works on [C]
// vectors.
// 1/M is a constant for static graphs and Cast(Size(x)) / C otherwise.
import { A } from '../../onnx/builder.ts';
import { ONNX_DTYPE } from '../../onnx/codec.ts';
import { batchStatsBn } from '../bn.ts';
import { channelAffine } from './affine.ts';
import { attrFloat } from './attrs.ts';
import type { RuleContext } from './types.ts';

/** The forward's centred [N, C, L] value d3 = x3 - mu3 behind a fused BN's statistics, if recognisable. */
function centred(c: RuleContext, mean: string, vr: string): string | null {
  const op = (v: string | undefined, t: string) => {
    const p = v ? c.producer(v) : undefined;
    return p && p.opType === t && p.domain === '' ? p : undefined;
  };
  const vFlat = op(vr, 'Reshape');
  const vRed = op(vFlat?.inputs[0], 'ReduceMean');
  const sq = op(vRed?.inputs[0], 'Mul');
  const mFlat = op(mean, 'Reshape');
  const d = sq && sq.inputs[0] === sq.inputs[1] ? op(sq.inputs[0], 'Sub') : undefined;
  if (!d || !mFlat || d.inputs[1] !== mFlat.inputs[0]) return null;
  return d.outputs[0]!;
}

/** Gradients [dx, dscale, dB] of a batch-statistics BN made by the fused lowering. */
export function batchNormTrainingBackward(c: RuleContext): (string | null)[] {
  const { b, node } = c;
  const info = batchStatsBn(node)!;
  const [x, scale, , mean, vr] = node.inputs as [string, string, string, string, string];
  const gy = c.gy[0]!;
  // The forward BN node reads epsilon as a float32 attribute.
  const eps = Math.fround(attrFloat(node, 'epsilon', 1e-5));
  const rank = c.rank(x);
  const dims = c.shape(x);
  const channels = dims[1]!;
  const nm = (s: string): { name: string } => ({ name: `bw_bn.${s}` });
  const sum3 = (v: string, s: string): string => b.op1('ReduceSum', [v, c.ints([0, 2])], { keepdims: A.int(0) }, nm(s));
  const view3 = c.ints([0, 0, -1]);
  const gy3 = b.op1('Reshape', [gy, view3], {}, nm('dy3'));
  const d3 = centred(c, mean, vr)
    ?? b.op1('Sub', [b.op1('Reshape', [x, view3], {}, nm('x3')), b.op1('Reshape', [mean, c.ints([1, -1, 1])], {}, nm('mu3'))], {}, nm('center'));
  const sdy = sum3(gy3, 'sum_dy');
  const ve = b.op1('Add', [vr, c.scalar(eps, x)], {}, nm('var_eps'));
  const inv = b.op1('Reciprocal', [b.op1('Sqrt', [ve], {}, nm('std'))], {}, nm('inv_std'));
  const needSdyd = c.needs[0] || c.needs[1];
  const sdyd = needSdyd ? sum3(b.op1('Mul', [gy3, d3], {}, nm('dy_d')), 'sum_dy_d') : null;
  let gx: string | null = null;
  if (c.needs[0]) {
    // -1/M per channel.
    const negInvM = info.static
      ? c.scalar(-channels / dims.reduce((a, v) => a * v, 1), x)
      : b.op1('Div', [c.scalar(-channels, x), b.op1('Cast', [b.op1('Size', [x], {}, nm('size'))], { to: A.int(ONNX_DTYPE[c.dtype(x)]) }, nm('count'))], {}, nm('neg_inv_m'));
    const k1 = b.op1('Mul', [scale, inv], {}, nm('k1'));
    const t = b.op1('Mul', [k1, negInvM], {}, nm('k1_m'));
    const k2 = b.op1('Mul', [b.op1('Div', [t, ve], {}, nm('k1_m_var')), sdyd!], {}, nm('k2'));
    const k0 = b.op1('Sub', [b.op1('Mul', [t, sdy], {}, nm('k1_m_dy')), b.op1('Mul', [k2, mean], {}, nm('k2_mu'))], {}, nm('k0'));
    // The per-channel affine maps as BN ops (./affine.ts; ResNet-20 TENT step, batch 64, 2 threads:
    // about 3 % faster than Mul by columns and a broadcasting Sum).
    const affine = channelAffine(c, x);
    gx = b.op1('Add', [affine(gy, k1), affine(x, k2, k0)], {}, nm('dx'));
  }
  const gs = c.needs[1] ? b.op1('Mul', [sdyd!, inv], {}, nm('dscale')) : null;
  return [gx, gs, c.needs[2] ? sdy : null, null, null];
}
