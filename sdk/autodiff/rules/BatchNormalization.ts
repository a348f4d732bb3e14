// BatchNormalization on given (running) statistics:
//   y = (x - mean) * inv * scale + B,  inv = 1 / sqrt(var + eps)
//   dx = dy * scale * inv,  dscale = (sum(dy * x) - mean * sum(dy)) * inv,  dB = sum(dy)
// (sums over all axes but the channel axis). Batch-statistics BN reaches this rule only as a node
// of ../bn.ts's 'op' or 'fused' lowering (name prefixes BN_BATCH_OP_PREFIX, BN_BATCH_STATS_PREFIX),
// whose closed-form backward through the statistics is in BatchNormTraining.ts; the 'primitive'
// lowering leaves no BN node. No other training_mode node reaches this rule.
import { batchStatsBn } from '../bn.ts';
import { channelAffine } from './affine.ts';
import { attrFloat, attrInt } from './attrs.ts';
import { batchNormTrainingBackward } from './BatchNormTraining.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'BatchNormalization',
  nonDiffInputs: [3, 4],
  backward(c) {
    const { b, node } = c;
    if (batchStatsBn(node)) return batchNormTrainingBackward(c);
    if (attrInt(node, 'training_mode', 0) === 1) c.fail('training_mode BN reached the inference rule; this is a bug in the BN lowering');
    const [x, scale, , mean, vr] = node.inputs as [string, string, string, string, string];
    const gy = c.gy[0]!;
    const eps = attrFloat(node, 'epsilon', 1e-5);
    const rank = c.rank(x);
    const inv = b.op1('Reciprocal', [b.op1('Sqrt', [b.op1('Add', [vr, c.scalar(eps, x)])])]);
    const axes = [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)];
    // Full-size per-channel products as BN-op affine maps (./affine.ts): one pass each.
    const affine = channelAffine(c, x);
    let gx: string | null = null;
    if (c.needs[0]) {
      const k = b.op1('Mul', [scale, inv]);
      gx = affine(gy, k);
      // only x's producer reads gx: a Conv there scales its weight instead (rules/Conv.ts)
      c.noteChannelScale(gx, gy, k);
    }
    const sdy = c.needs[1] || c.needs[2] ? c.reduceSum(gy, axes, false) : null;
    // dscale = sum(dy * (x - mean)) * inv = (sum(dy * x) - mean * sum(dy)) * inv: one product over the
    // activation instead of recomputing xhat (the difference of sums loses digits only where |mean|
    // is many standard deviations, harmless in a gradient)
    const gs = c.needs[1]
      ? b.op1('Mul', [b.op1('Sub', [c.reduceSum(b.op1('Mul', [gy, x]), axes, false), b.op1('Mul', [mean, sdy!])]), inv])
      : null;
    return [gx, gs, c.needs[2] ? sdy : null, null, null];
  },
};
