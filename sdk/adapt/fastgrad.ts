// NOT USED BY sdk/adapt ANY MORE: the autodiff Conv rule (sdk/autodiff/rules/convgrad.ts) writes
// stride-1 input gradients as Conv itself, so the adapt-step graph has nothing left to rewrite.
// Kept only because sdk/quant/recon.ts still imports it (a no-op there too for the same reason);
// delete this file and test/adapt/fastgrad.test.ts's first case once that import is gone.
//
// A rewrite of the step graph for speed: onnxruntime's CPU ConvTranspose is 2-3x slower than Conv
// of the same size, and the input gradient of every stride-1 convolution is a ConvTranspose.
// With stride 1 and dilation 1,
//   ConvTranspose(dY, W, pads p) == Conv(dY, W', pads k - 1 - p),
//   W'[g*Cig + i, o] = flip_spatial(W[g*Cog + o, i])      (W: [Co, Cig, k...], groups g)
// W' is computed once here when W is an initializer (one-off build-time work), else by
// Reshape/Transpose/Slice nodes in the graph (constant-folded by onnxruntime when it can).
import { A, GraphBuilder } from '../onnx/builder.ts';
import { makeTensor } from '../onnx/tensor.ts';
import type { Model, Node, Tensor } from '../onnx/types.ts';

const intsAttr = (n: Node, k: string): readonly number[] | undefined => {
  const a = n.attrs[k];
  return a?.kind === 'ints' ? a.value : undefined;
};
const intAttr = (n: Node, k: string, d: number): number => {
  const a = n.attrs[k];
  return a?.kind === 'int' ? a.value : d;
};

/** W' of the file comment for a float32 initializer W [Co, Cig, k...]. */
function flipTransposeWeights(w: Tensor, group: number): Tensor {
  const [co, cig, ...ks] = w.dims as number[];
  const K = ks.reduce((a, b) => a * b, 1);
  const cog = co! / group;
  const src = w.data as Float32Array;
  const out = new Float32Array(src.length);
  for (let g = 0; g < group; g++) {
    for (let o = 0; o < cog; o++) {
      for (let i = 0; i < cig!; i++) {
        const from = ((g * cog + o) * cig! + i) * K;
        const to = ((g * cig! + i) * cog + o) * K;
        // Flipping every spatial axis of a row-major block is reversing it.
        for (let k = 0; k < K; k++) out[to + k] = src[from + K - 1 - k]!;
      }
    }
  }
  return makeTensor('float32', [group * cig!, cog, ...ks], out);
}

/** Replaces stride-1, dilation-1 ConvTransposes (without output padding or bias) by Convs. */
export function convTransposeToConv(model: Model): Model {
  const g = model.graph;
  const candidates = g.nodes.filter((n) => {
    if (n.opType !== 'ConvTranspose' || (n.domain !== '' && n.domain !== 'ai.onnx') || n.inputs.length > 2 && n.inputs[2]) return false;
    const ks = intsAttr(n, 'kernel_shape');
    const r = ks?.length ?? 0;
    if (!ks || r === 0) return false;
    const one = (k: string, v: number): boolean => (intsAttr(n, k) ?? new Array<number>(r).fill(v)).every((x) => x === v);
    if (!one('strides', 1) || !one('dilations', 1) || !one('output_padding', 0)) return false;
    if (n.attrs['output_shape'] || (n.attrs['auto_pad'] && n.attrs['auto_pad'].kind === 'string' && n.attrs['auto_pad'].value !== 'NOTSET')) return false;
    const pads = intsAttr(n, 'pads') ?? new Array<number>(2 * r).fill(0);
    return pads.every((p, i) => p <= ks[i % r]! - 1);
  });
  if (candidates.length === 0) return model;
  const taken: string[] = [];
  for (const n of g.nodes) { taken.push(n.name); n.outputs.forEach((o) => taken.push(o)); }
  for (const v of g.inputs) taken.push(v.name);
  for (const k of g.initializers.keys()) taken.push(k);
  const b = new GraphBuilder(g.name, '', taken);
  for (const [k, t] of g.initializers) b.initializers.set(k, t);
  const flipped = new Map<string, string>();
  const set = new Set(candidates);
  for (const n of g.nodes) {
    if (!set.has(n)) { b.nodes.push(n); continue; }
    const [dy, w] = n.inputs as [string, string];
    const ks = intsAttr(n, 'kernel_shape')!;
    const r = ks.length;
    const group = intAttr(n, 'group', 1);
    const pads = intsAttr(n, 'pads') ?? new Array<number>(2 * r).fill(0);
    const key = `${w}|${group}`;
    let wf = flipped.get(key);
    if (!wf) {
      const init = g.initializers.get(w);
      if (init && init.dtype === 'float32' && init.dims.length === r + 2) {
        wf = b.constant(flipTransposeWeights(init, group), `${w}.flipT`);
      } else {
        // [Co, Cig, k...] -> [G, Cog, Cig, k...] -> [G, Cig, Cog, k...] -> [G*Cig, Cog, k...], flipped.
        const sp = Array.from({ length: r }, (_, i) => i + 3);
        const wShape = b.op1('Shape', [w]);
        const w5 = b.op1('Reshape', [w, b.op1('Concat', [b.ints([group, -1]), b.op1('Slice', [wShape, b.ints([1]), b.ints([2 + r])])], { axis: A.int(0) })]);
        const t = b.op1('Transpose', [w5], { perm: A.ints([0, 2, 1, ...sp]) });
        const w4 = b.op1('Reshape', [t, b.op1('Concat', [b.ints([-1]), b.op1('Slice', [b.op1('Shape', [t]), b.ints([2]), b.ints([3 + r])])], { axis: A.int(0) })]);
        const axes = Array.from({ length: r }, (_, i) => i + 2);
        wf = b.op1('Slice', [w4, b.ints(axes.map(() => -1)), b.ints(axes.map(() => -(2 ** 62))), b.ints(axes), b.ints(axes.map(() => -1))]);
      }
      flipped.set(key, wf);
    }
    const cpads = pads.map((p, i) => ks[i % r]! - 1 - p);
    b.op('Conv', [dy, wf], { group: A.int(group), kernel_shape: A.ints(ks), pads: A.ints(cpads) }, { outputNames: [n.outputs[0]!], name: `${n.name}.as_conv` });
  }
  const used = new Set<string>();
  for (const n of b.nodes) n.inputs.forEach((x) => used.add(x));
  for (const v of g.outputs) used.add(v.name);
  const initializers = new Map([...b.initializers].filter(([k]) => used.has(k)));
  return { ...model, graph: { ...g, nodes: [...b.nodes], initializers } };
}
