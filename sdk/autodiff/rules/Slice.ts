// Slice: the gradient is dy placed back where the slice came from, zeros elsewhere. Unit steps are
// a Pad; other steps (including negative) contract dy with a constant 0/1 selection matrix along
// that axis. starts/ends/axes/steps must be constants; sliced axes need static extents.
import { A } from '../../onnx/builder.ts';
import { makeTensor } from '../../onnx/tensor.ts';
import { allocArray } from '../../onnx/tensor.ts';
import { constInts, normAxes } from './attrs.ts';
import type { Tensor } from '../../onnx/types.ts';
import type { GradRule } from './types.ts';

/** Indices selected along one axis of extent `dim` (ONNX Slice clamping rules). */
function selected(start: number, end: number, step: number, dim: number): number[] {
  const clamp = (v: number, lo: number, hi: number): number => Math.min(Math.max(v, lo), hi);
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) { s = clamp(s, 0, dim); e = clamp(e, 0, dim); } else { s = clamp(s, 0, dim - 1); e = clamp(e, -1, dim - 1); }
  const out: number[] = [];
  for (let i = s; step > 0 ? i < e : i > e; i += step) out.push(i);
  return out;
}

export const rule: GradRule = {
  opType: 'Slice',
  nonDiffInputs: [1, 2, 3, 4],
  backward(c) {
    const { b } = c;
    const x = c.node.inputs[0]!;
    const xs = c.shape(x);
    const r = xs.length;
    const starts = constInts(c, 1, 'starts')!;
    const ends = constInts(c, 2, 'ends')!;
    const axes = normAxes(constInts(c, 3, 'axes') ?? starts.map((_, i) => i), r);
    const steps = constInts(c, 4, 'steps') ?? starts.map(() => 1);
    let g = c.gy[0]!;
    const pads = new Array<number>(2 * r).fill(0);
    let anyPad = false;
    axes.forEach((ax, i) => {
      const dim = xs[ax]!;
      const idx = selected(starts[i]!, ends[i]!, steps[i]!, dim);
      if (steps[i] === 1) {
        const lo = idx.length ? idx[0]! : 0;
        pads[ax] = lo;
        pads[ax + r] = dim - lo - idx.length;
        anyPad ||= pads[ax]! > 0 || pads[ax + r]! > 0;
        return;
      }
      // Selection matrix S [m, dim], S[j, idx[j]] = 1; move the axis last, MatMul, move it back.
      const dt = c.dtype(x);
      const sel = allocArray(dt, idx.length * dim) as Float32Array;
      idx.forEach((p, j) => { sel[j * dim + p] = dt === 'float16' ? 0x3c00 : 1; });
      const S = b.constant(makeTensor(dt, [idx.length, dim], sel as never) as Tensor, 'slice_select');
      const perm = Array.from({ length: r }, (_, k) => k).filter((k) => k !== ax).concat([ax]);
      const inv = new Array<number>(r);
      perm.forEach((p, k) => { inv[p] = k; });
      const moved = ax === r - 1 ? g : b.op1('Transpose', [g], { perm: A.ints(perm) });
      const mm = b.op1('MatMul', [moved, S]);
      g = ax === r - 1 ? mm : b.op1('Transpose', [mm], { perm: A.ints(inv) });
    });
    if (anyPad) g = b.op1('Pad', [g, c.ints(pads)], { mode: A.str('constant') });
    return [g];
  },
};
