// Conv (any spatial rank, groups incl. depthwise, strides, pads/auto_pad, dilations).
// Two formulations of dX and dW exist; `chooseConvGrad` (convgrad.ts) picks one per conv, and
// RuleContext.options.conv forces one (LEGACY_CONV_GRAD = the two described here).
//   dX, fast form: a Conv over dY with flipped, group-transposed weights (convgrad.ts).
//   dW, fast forms: one Gemm per kernel offset over shifted copies of X and dY (stride 1), over
//       strided Slices of X (strided), or one Gemm / batched MatMul over concatenated Slices
//       (1x1 kernels, few input channels, groups on request); depthwise: per-channel GEMMs over
//       rows of X and dY with the last axis' offsets picked as diagonals ('rowgemm', the default),
//       or a Mul + ReduceSum per kernel offset ('shifted') (convgrad.ts).
//   dX: ConvTranspose of dY with the same weights, strides, pads, dilations and groups, with
//       output_padding chosen so the result has X's extent (the rows a strided conv never read).
//   dW: a Conv that correlates X with dY: batch and channel axes swapped so the sum over samples
//       becomes the channel sum of a conv, forward stride and dilation trade places. Per group g:
//         X  [N, G*Cg, S]  -> [Cg, G*N, S]        (input: batch Cg, channels (g, n))
//         dY [N, G*Og, So] -> [G*Og, N, So]       (weights: out channel (g, o), in channels n)
//         Conv(group G, strides = dilations, dilations = strides, pads) -> [Cg, G*Og, K']
//       sliced to the kernel extent K and transposed to [G*Og, Cg, K].
//   dB: dY summed over batch and spatial axes.
// Spatial extents (not the batch size) are taken from the static shapes.
import { TtaqError } from '../../errors/index.ts';
import { A } from '../../onnx/builder.ts';
import type { Node } from '../../onnx/types.ts';
import { attrInt, attrInts, attrString } from './attrs.ts';
import { chooseConvGrad, type ConvCase } from './convgrad.ts';
import { inputGradAsConv, inputGradByPhase } from './convgrad-input.ts';
import { weightGradAsGemm, weightGradDepthwise, weightGradOneHot, weightGradRowGemm, weightGradShifted, weightGradShiftMatmul, weightGradShiftMatmulBatched, weightGradShiftMatmulKernelMajor } from './convgrad-weight.ts';
import type { GradRule } from './types.ts';

export interface ConvGeometry {
  readonly spatial: readonly number[];
  readonly out: readonly number[];
  readonly kernel: readonly number[];
  readonly strides: readonly number[];
  readonly dilations: readonly number[];
  readonly padsBegin: readonly number[];
  readonly padsEnd: readonly number[];
}

/** Resolves strides, dilations and explicit pads (auto_pad included) of a Conv/pool node. */
export function convGeometry(node: Node, spatial: readonly number[], out: readonly number[], kernel: readonly number[]): ConvGeometry {
  const r = spatial.length;
  const ones = new Array<number>(r).fill(1);
  const strides = attrInts(node, 'strides') ?? ones;
  const dilations = attrInts(node, 'dilations') ?? ones;
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  let padsBegin: number[];
  let padsEnd: number[];
  if (autoPad === 'NOTSET') {
    const p = attrInts(node, 'pads') ?? new Array<number>(2 * r).fill(0);
    padsBegin = p.slice(0, r);
    padsEnd = p.slice(r);
  } else if (autoPad === 'VALID') {
    padsBegin = new Array<number>(r).fill(0);
    padsEnd = new Array<number>(r).fill(0);
  } else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    padsBegin = []; padsEnd = [];
    for (let i = 0; i < r; i++) {
      const total = Math.max(0, (out[i]! - 1) * strides[i]! + (kernel[i]! - 1) * dilations[i]! + 1 - spatial[i]!);
      const small = Math.floor(total / 2);
      padsBegin.push(autoPad === 'SAME_UPPER' ? small : total - small);
      padsEnd.push(autoPad === 'SAME_UPPER' ? total - small : small);
    }
  } else {
    throw new TtaqError('AUTODIFF_BAD_REQUEST', `node '${node.name}' (${node.opType}) has auto_pad '${autoPad}'; expected NOTSET, VALID, SAME_UPPER or SAME_LOWER`, { node: node.name });
  }
  return { spatial, out, kernel, strides, dilations, padsBegin, padsEnd };
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

export const rule: GradRule = {
  opType: 'Conv',
  backward(c) {
    const { b, node } = c;
    const [x, w, bias] = node.inputs as [string, string, string | undefined];
    const y = node.outputs[0]!;
    const gy = c.gy[0]!;
    const xs = c.shape(x);
    const ws = c.shape(w);
    const ys = c.shape(y);
    const r = xs.length - 2;
    const group = attrInt(node, 'group', 1);
    const kernel = ws.slice(2);
    const geo = convGeometry(node, xs.slice(2), ys.slice(2), kernel);
    const { strides, dilations, padsBegin, padsEnd } = geo;
    const cc: ConvCase = { x: xs, w: ws, y: ys, group, strides, dilations, padsBegin, padsEnd };
    const how = chooseConvGrad(cc, c.options.conv);

    // dY = k * u with a per-channel k (a BN backward's last factor): every gradient is linear in dY
    // and keeps its output channels apart, so k goes onto W for dX and onto the rows of dW and dB
    // (weight-sized Muls) and the pass over the activation that would scale u is dropped (one per
    // BN in ResNet-20's training and reconstruction steps). Only where W's own gradient is wanted,
    // W then changing every step: a W that is fixed (a constant, or a DequantizeLinear of one in a
    // QDQ model) onnxruntime folds and prepacks once, and the scaled copy made it reorder the weight
    // on every run, which cost more than the pass saved at small batches (TENT step, batch 1:
    // 5.3 -> 6.5 ms)
    const fold = c.needs[1] ? c.channelScaled(gy) : undefined;
    const dy = fold?.value ?? gy;
    // the scale along W's output-channel axis, for ConvTranspose's W and for dW's rows
    const scaleRows = fold ? b.op1('Reshape', [fold.scale, c.ints([ws[0]!, 1, ...kernel.map(() => 1)])]) : undefined;
    let gx: string | null = null;
    if (c.needs[0] && how.input === 'conv') gx = inputGradAsConv(c, dy, w, cc, fold?.scale);
    if (c.needs[0] && how.input === 'phase') gx = inputGradByPhase(c, dy, w, cc, fold?.scale);
    // ConvTranspose reads W itself: scale its output-channel axis
    const wx = scaleRows && c.needs[0] && gx === null ? b.op1('Mul', [w, scaleRows], {}, { name: `${node.name}.grad_weight_scaled` }) : w;
    if (c.needs[0] && gx === null) {
      const outPad = range(0, r).map((i) => xs[i + 2]! - ((ys[i + 2]! - 1) * strides[i]! + (kernel[i]! - 1) * dilations[i]! + 1 - padsBegin[i]! - padsEnd[i]!));
      if (outPad.some((p, i) => p < 0 || p >= Math.max(strides[i]!, dilations[i]!))) {
        c.fail(`cannot map the input gradient back (output_padding [${outPad.join(', ')}]); check the Conv attributes`);
      }
      gx = b.op1('ConvTranspose', [dy, wx], {
        group: A.int(group), strides: A.ints(strides), dilations: A.ints(dilations), kernel_shape: A.ints(kernel),
        pads: A.ints([...padsBegin, ...padsEnd]), output_padding: A.ints(outPad),
      }, { name: `${node.name}.grad_input` });
    }

    let gw: string | null = null;
    if (c.needs[1] && (how.weight === 'gemm' || how.weight === 'gemmsplit')) gw = weightGradAsGemm(c, x, dy, cc, how.weight === 'gemmsplit');
    // 'shiftmm' applies to 2-D ungrouped convs only; the others take the 'shifted' chain
    if (c.needs[1] && how.weight === 'shiftmm') gw = weightGradShiftMatmul(c, x, dy, cc);
    if (c.needs[1] && how.weight === 'shiftmmb') gw = weightGradShiftMatmulBatched(c, x, dy, cc);
    if (c.needs[1] && how.weight === 'shiftmmk') gw = weightGradShiftMatmulKernelMajor(c, x, dy, cc);
    if (c.needs[1] && gw === null && (how.weight === 'shifted' || how.weight === 'shiftmm' || how.weight === 'shiftmmb' || how.weight === 'shiftmmk')) gw = weightGradDepthwise(c, x, dy, cc) ?? weightGradShifted(c, x, dy, cc) ?? weightGradAsGemm(c, x, dy, cc, true);
    if (c.needs[1] && how.weight === 'onehot') gw = weightGradOneHot(c, x, dy, cc);
    if (c.needs[1] && how.weight === 'rowgemm') gw = weightGradRowGemm(c, x, dy, cc); // null unless depthwise: the Conv form
    if (c.needs[1] && gw === null) {
      const cin = xs[1]!;
      const cg = cin / group;
      const og = ws[0]! / group;
      const sp = range(2, r + 2);
      let xr: string;
      let gr: string;
      if (group === 1) {
        xr = b.op1('Transpose', [x], { perm: A.ints([1, 0, ...sp]) });
        gr = b.op1('Transpose', [dy], { perm: A.ints([1, 0, ...sp]) });
      } else {
        const sp5 = range(3, r + 3);
        const x5 = b.op1('Reshape', [x, c.ints([0, group, cg, ...xs.slice(2)])]);
        xr = b.op1('Reshape', [b.op1('Transpose', [x5], { perm: A.ints([2, 1, 0, ...sp5]) }), c.ints([cg, -1, ...xs.slice(2)])]);
        const g5 = b.op1('Reshape', [dy, c.ints([0, group, og, ...ys.slice(2)])]);
        gr = b.op1('Reshape', [b.op1('Transpose', [g5], { perm: A.ints([1, 2, 0, ...sp5]) }), c.ints([group * og, -1, ...ys.slice(2)])]);
      }
      let z = b.op1('Conv', [xr, gr], {
        group: A.int(group), strides: A.ints(dilations), dilations: A.ints(strides), pads: A.ints([...padsBegin, ...padsEnd]),
        kernel_shape: A.ints(ys.slice(2)),
      }, { name: `${node.name}.grad_weight` });
      const full = range(0, r).map((i) => Math.floor((xs[i + 2]! + padsBegin[i]! + padsEnd[i]! - strides[i]! * (ys[i + 2]! - 1) - 1) / dilations[i]!) + 1);
      if (full.some((f, i) => f !== kernel[i])) {
        z = b.op1('Slice', [z, c.ints(new Array<number>(r).fill(0)), c.ints(kernel), c.ints(sp)]);
      }
      gw = b.op1('Transpose', [z], { perm: A.ints([1, 0, ...sp]) });
    }

    let gb = bias && c.needs[2] ? c.reduceSum(dy, [0, ...range(2, r + 2)], false) : null;
    if (fold) {
      if (gw) gw = b.op1('Mul', [gw, scaleRows!], {}, { name: `${node.name}.grad_weight_rows_scaled` });
      if (gb) gb = b.op1('Mul', [gb, fold.scale], {}, { name: `${node.name}.grad_bias_scaled` });
    }
    return [gx, gw, gb];
  },
};
