// Dropout as evaluated by onnxruntime's inference build: the identity (ratio ignored unless
// training_mode is a constant true, which is refused: the mask is not reproducible here).
import { constInts } from './attrs.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'Dropout',
  nonDiffInputs: [1, 2],
  backward(c) {
    const training = constInts(c, 2, 'training_mode');
    if (training && training[0]) c.fail('Dropout in training mode is not differentiable here; set training_mode to false or remove the node');
    return [c.gy[0]!];
  },
};
