// BatchNormalization on given (running) statistics:
//   y = (x - mean) * inv * scale + B,  inv = 1 / sqrt(var + eps)
//   dx = dy * scale * inv,  dscale = sum(dy * (x - mean) * inv),  dB = sum(dy)
// (sums over all axes but the channel axis). Batch-statistics BN reaches this rule only as the
// inference-mode node of ../bn.ts's 'fused' lowering (name prefix BN_BATCH_STATS_PREFIX), whose
// closed-form backward through the statistics is in BatchNormTraining.ts; the 'primitive' lowering
// leaves no BN node. A training_mode node never reaches this rule.
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
    if (attrInt(node, 'training_mode', 0) === 1) c.fail('training_mode BN reached the inference rule; this is a bug in the BN lowering');
    if (batchStatsBn(node)) return batchNormTrainingBackward(c);
    const [x, scale, , mean, vr] = node.inputs as [string, string, string, string, string];
    const gy = c.gy[0]!;
    const eps = attrFloat(node, 'epsilon', 1e-5);
    const rank = c.rank(x);
    const inv = b.op1('Reciprocal', [b.op1('Sqrt', [b.op1('Add', [vr, c.scalar(eps, x)])])]);
    const axes = [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2)];
    // Full-size per-channel products as BN-op affine maps (./affine.ts): one pass each.
    const affine = channelAffine(c, x);
    const gx = c.needs[0] ? affine(gy, b.op1('Mul', [scale, inv])) : null;
    let gs: string | null = null;
    if (c.needs[1]) {
      // xhat = (x - mean) * inv = inv * x + (-mean * inv)
      const xhat = affine(x, inv, b.op1('Neg', [b.op1('Mul', [mean, inv])]));
      gs = c.reduceSum(b.op1('Mul', [gy, xhat]), axes, false);
    }
    const gb = c.needs[2] ? c.reduceSum(gy, axes, false) : null;
    return [gx, gs, gb, null, null];
  },
};
