// A per-channel affine map a * v + c over an [N, C, ...] value, written as a BatchNormalization op
// with mean 0, variance 1 and epsilon 0 (exactly a * v + c). Why: onnxruntime's BN kernel makes one
// pass, where a Mul by a [C, 1, 1] column (and a broadcasting Add or Sum) takes a slower broadcast
// path; the BN backward rules use it for their full-size per-channel products.
import { A } from '../../onnx/builder.ts';
import { allocArray, makeTensor } from '../../onnx/tensor.ts';
import type { Tensor } from '../../onnx/types.ts';
import type { RuleContext } from './types.ts';

/** Returns a function computing a * v + shift per channel (a, shift: [C] values; shift omitted: 0). */
export function channelAffine(c: RuleContext, like: string): (v: string, a: string, shift?: string) => string {
  const dtype = c.dtype(like);
  const channels = c.shape(like)[1]!;
  const vec = (value: number): string => {
    const data = allocArray(dtype, channels);
    (data as Float32Array).fill(value);
    return c.b.constant(makeTensor(dtype, [channels], data) as Tensor, value === 0 ? 'bw_zeros' : 'bw_ones');
  };
  let zeros: string | undefined;
  let ones: string | undefined;
  return (v, a, shift) => {
    zeros ??= vec(0);
    ones ??= vec(1);
    return c.b.op1('BatchNormalization', [v, a, shift ?? zeros, zeros, ones], { epsilon: A.float(0) }, { name: 'bw_affine' });
  };
}
