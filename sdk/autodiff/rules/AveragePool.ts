// AveragePool: dY divided by each window's divisor (a constant map over output positions), then
// spread over the window with a ones-kernel ConvTranspose on the (N*C, 1, ...) view, and finally
// cut to the unpadded input (or zero-extended where the last windows fell short of it).
import { A } from '../../onnx/builder.ts';
import { allocArray, makeTensor } from '../../onnx/tensor.ts';
import { attrInt, attrInts } from './attrs.ts';
import { convGeometry } from './Conv.ts';
import type { Tensor } from '../../onnx/types.ts';
import type { GradRule } from './types.ts';

export const rule: GradRule = {
  opType: 'AveragePool',
  backward(c) {
    const { b, node } = c;
    const x = node.inputs[0]!;
    const xs = c.shape(x);
    const ys = c.shape(node.outputs[0]!);
    const r = xs.length - 2;
    const kernel = attrInts(node, 'kernel_shape') ?? c.fail('kernel_shape is missing');
    const geo = convGeometry(node, xs.slice(2), ys.slice(2), kernel);
    const dt = c.dtype(x);
    if (dt !== 'float32' && dt !== 'float64') c.fail(`AveragePool gradient supports float32 and float64, not ${dt}`);
    const includePad = attrInt(node, 'count_include_pad', 0) === 1;
    // Per-axis divisor factors: window positions that fall inside the counted region.
    const perAxis = Array.from({ length: r }, (_, i) => {
      const S = xs[i + 2]!;
      const lo = includePad ? -geo.padsBegin[i]! : 0;
      const hi = includePad ? S + geo.padsEnd[i]! : S;
      return Array.from({ length: ys[i + 2]! }, (_, o) => {
        let n = 0;
        for (let j = 0; j < kernel[i]!; j++) {
          const p = o * geo.strides[i]! - geo.padsBegin[i]! + j * geo.dilations[i]!;
          if (p >= lo && p < hi) n++;
        }
        return n;
      });
    });
    const outSp = ys.slice(2);
    const count = outSp.reduce((a, v) => a * v, 1);
    const inv = allocArray('float32', count);
    for (let k = 0; k < count; k++) {
      let rem = k;
      let d = 1;
      for (let i = r - 1; i >= 0; i--) { d *= perAxis[i]![rem % outSp[i]!]!; rem = Math.floor(rem / outSp[i]!); }
      inv[k] = d > 0 ? 1 / d : 0;
    }
    const invT = dt === 'float64' ? makeTensor('float64', [1, 1, ...outSp], Float64Array.from(inv)) : makeTensor('float32', [1, 1, ...outSp], inv);
    const scaled = b.op1('Mul', [b.op1('Reshape', [c.gy[0]!, c.ints([-1, 1, ...outSp])]), b.constant(invT, 'avgpool_inv_divisor')]);
    const ones = allocArray(dt, kernel.reduce((a, v) => a * v, 1)) as Float32Array;
    ones.fill(1);
    const kT = b.constant(makeTensor(dt, [1, 1, ...kernel], ones as never) as Tensor, 'avgpool_ones');
    let g = b.op1('ConvTranspose', [scaled, kT], {
      strides: A.ints(geo.strides), dilations: A.ints(geo.dilations), kernel_shape: A.ints(kernel),
    }, { name: `${node.name}.grad_input` });
    // Full extent F = (So-1)*s + (k-1)*d + 1 covers padded coordinates [-pb, F - pb).
    const axes = Array.from({ length: r }, (_, i) => i + 2);
    const full = axes.map((_, i) => (outSp[i]! - 1) * geo.strides[i]! + (kernel[i]! - 1) * geo.dilations[i]! + 1);
    const starts = axes.map((_, i) => geo.padsBegin[i]!);
    const ends = axes.map((_, i) => Math.min(full[i]!, geo.padsBegin[i]! + xs[i + 2]!));
    if (starts.some((s) => s > 0) || ends.some((e, i) => e < full[i]!)) g = b.op1('Slice', [g, c.ints(starts), c.ints(ends), c.ints(axes)]);
    const short = axes.map((_, i) => geo.padsBegin[i]! + xs[i + 2]! - ends[i]!);
    if (short.some((s) => s > 0)) g = b.op1('Pad', [g, c.ints([0, 0, ...new Array<number>(r).fill(0), 0, 0, ...short])], { mode: A.str('constant') });
    return [b.op1('Reshape', [g, c.shapeOf(x)])];
  },
};
