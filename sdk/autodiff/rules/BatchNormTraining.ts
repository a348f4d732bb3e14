// Closed-form backward of BatchNormalization on batch statistics: ../bn.ts's 'op' lowering (a
// training-mode node with momentum 0 whose outputs 1 and 2 are mu and v) or its 'fused' lowering (an
// inference-mode BN node fed with mu = mean(x) and v = mean((x - mu)^2)), per channel c over its
// M = N * spatial elements. With inv = 1 / sqrt(v + eps), xhat = (x - mu) * inv, sums over [0, 2]
// of the [N, C, L] view:
//   dB = sum(dy),  dscale = inv * sum(dy * d)  (d = x - mu: the 'fused' forward's centred value;
//                  for 'op', sum(dy * x) - mu * dB, which loses digits only where |mu| is many
//                  standard deviations, harmless in a gradient)
//   dx = scale * inv / M * (M * dy - dB - xhat * sum(dy * xhat))
//      = k1 * dy + k2 * x + k0   with per-channel  k1 = scale * inv,  k2 = -k1 * inv^2 * sum(dy * d) / M,
//                                                  k0 = -k1 * dB / M - k2 * mu
// so dx costs two per-channel affine maps and one Add over the activation, one map fewer where a
// Conv produced x (it takes k1 into its weight); the rest works on [C] vectors.
// Gradients arriving at the 'op' node's statistics outputs add dmu / M + 2 * dv * (x - mu) / M.
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

/** Gradients [dx, dscale, dB] of a batch-statistics BN made by the 'op' or 'fused' lowering. */
export function batchNormTrainingBackward(c: RuleContext): (string | null)[] {
  const { b, node } = c;
  const info = batchStatsBn(node)!;
  const [x, scale, , inMean, inVar] = node.inputs as [string, string, string, string, string];
  const [mean, vr] = info.op ? [node.outputs[1]!, node.outputs[2]!] : [inMean, inVar];
  const gy = c.gy[0] ?? c.fail('only the batch statistics of this BatchNormalization lead to the loss; compute them with ReduceMean instead');
  // The forward BN node reads epsilon as a float32 attribute.
  const eps = Math.fround(attrFloat(node, 'epsilon', 1e-5));
  const dims = c.shape(x);
  const channels = dims[1]!;
  const nm = (s: string): { name: string } => ({ name: `bw_bn.${s}` });
  const sum3 = (v: string, s: string): string => b.op1('ReduceSum', [v, c.ints([0, 2])], { keepdims: A.int(0) }, nm(s));
  const view3 = c.ints([0, 0, -1]);
  const gy3 = b.op1('Reshape', [gy, view3], {}, nm('dy3'));
  const x3 = (): string => b.op1('Reshape', [x, view3], {}, nm('x3'));
  const d3 = info.op ? null : centred(c, mean, vr)
    ?? b.op1('Sub', [x3(), b.op1('Reshape', [mean, c.ints([1, -1, 1])], {}, nm('mu3'))], {}, nm('center'));
  const sdy = sum3(gy3, 'sum_dy');
  const ve = b.op1('Add', [vr, c.scalar(eps, x)], {}, nm('var_eps'));
  const inv = b.op1('Reciprocal', [b.op1('Sqrt', [ve], {}, nm('std'))], {}, nm('inv_std'));
  const needSdyd = c.needs[0] || c.needs[1];
  const sdyd = !needSdyd ? null
    : d3 ? sum3(b.op1('Mul', [gy3, d3], {}, nm('dy_d')), 'sum_dy_d')
    : b.op1('Sub', [sum3(b.op1('Mul', [gy3, x3()], {}, nm('dy_x')), 'sum_dy_x'), b.op1('Mul', [mean, sdy], {}, nm('mu_sum_dy'))], {}, nm('sum_dy_d'));
  // -1/M per channel.
  const negInvM = (): string => info.static
    ? c.scalar(-channels / dims.reduce((a, v) => a * v, 1), x)
    : b.op1('Div', [c.scalar(-channels, x), b.op1('Cast', [b.op1('Size', [x], {}, nm('size'))], { to: A.int(ONNX_DTYPE[c.dtype(x)]) }, nm('count'))], {}, nm('neg_inv_m'));
  let gx: string | null = null;
  if (c.needs[0]) {
    const k1 = b.op1('Mul', [scale, inv], {}, nm('k1'));
    // dx = k1 * (dy + c2 * x + c0) with c2 = k2 / k1 and c0 = k0 / k1 computed without dividing by
    // the scale: the last factor k1 is left for a Conv producing x to fold into its weight
    // (rules/Conv.ts), so the activation sees one affine map and one Add
    const m = negInvM();
    const c2 = b.op1('Mul', [b.op1('Div', [m, ve], {}, nm('neg_inv_m_var')), sdyd!], {}, nm('c2'));
    const c0 = b.op1('Sub', [b.op1('Mul', [m, sdy], {}, nm('neg_mean_dy')), b.op1('Mul', [c2, mean], {}, nm('c2_mu'))], {}, nm('c0'));
    // The per-channel affine maps as BN ops (./affine.ts; ResNet-20 TENT step, batch 64, 2 threads:
    // about 3 % faster than Mul by columns and a broadcasting Sum).
    const affine = channelAffine(c, x);
    const u = b.op1('Add', [gy, affine(x, c2, c0)], {}, nm('dx_unscaled'));
    gx = affine(u, k1);
    c.noteChannelScale(gx, u, k1);
    const [gmu, gv] = info.op ? [c.gy[1] ?? null, c.gy[2] ?? null] : [null, null];
    if (gmu || gv) {
      // + dmu / M + 2 dv (x - mu) / M as one affine map a * x + (dmu / M - a * mu), a = 2 dv / M
      const invM = b.op1('Neg', [m], {}, nm('inv_m'));
      const a = gv ? b.op1('Mul', [b.op1('Mul', [gv, invM], {}, nm('dv_m')), c.scalar(2, x)], {}, nm('stat_a')) : null;
      const fromMu = gmu ? b.op1('Mul', [gmu, invM], {}, nm('dmu_m')) : null;
      const fromV = a ? b.op1('Neg', [b.op1('Mul', [a, mean], {}, nm('stat_a_mu'))], {}, nm('stat_a_shift')) : null;
      const shift = fromMu && fromV ? b.op1('Add', [fromMu, fromV], {}, nm('stat_shift')) : (fromMu ?? fromV)!;
      gx = b.op1('Add', [gx, affine(x, a ?? b.op1('Mul', [shift, c.scalar(0, x)], {}, nm('stat_zero_a')), shift)], {}, nm('dx_stats'));
    }
  }
  const gs = c.needs[1] ? b.op1('Mul', [sdyd!, inv], {}, nm('dscale')) : null;
  return [gx, gs, c.needs[2] ? sdy : null, null, null];
}
