// PEM — perturbation error mitigation (SPEC section 3). Domain shift is modelled as an input
// perturbation δ. For each quantized layer l we measure, on the FP model, the perturbation-to-
// signal ratio of its input ρ_l = E‖δ_l‖² / E‖x_l‖² over a family of perturbations (Gaussian noise,
// blur, contrast, brightness), with clean and perturbed images in one batch so everything is reduced
// inside onnxruntime. The reconstruction loss then adds Σ_l c_l‖Ŵ_l‖² with
//   c_l = ρ_l · (E‖x_l‖² / n_in) · P_out,
// the expected output energy ‖Ŵ_l δ_l‖² per sample of a white perturbation with that ratio (n_in
// input elements, P_out output positions). This is SPEC's ρ_l‖Ŵ_l‖²/‖W_l‖² times the FP layer's
// perturbation energy, which puts it in the units of the reconstruction error (see docs/METHOD.md).
import { TtaqError } from '../errors/index.ts';
import { A, GraphBuilder } from '../onnx/builder.ts';
import { f32 } from '../onnx/tensor.ts';
import type { Model } from '../onnx/types.ts';
import { getOpset } from '../onnx/versions.ts';
import { createSession } from '../runtime/index.ts';
import type { QuantPlan } from './plan.ts';
import { fixedBatch, forBatches, modelInput, reduce, setSize, valueDims, type CalibSet } from './stats.ts';

export type PerturbationKind = 'noise' | 'blur' | 'contrast' | 'brightness';

export interface Perturbation {
  readonly kind: PerturbationKind;
  /** noise: σ as a fraction of the batch std; blur: Gaussian σ in pixels (3x3); contrast: 1 − factor; brightness: shift as a fraction of the std. */
  readonly strength: number;
}

export const DEFAULT_PERTURBATIONS: readonly Perturbation[] = [
  { kind: 'noise', strength: 0.3 },
  { kind: 'blur', strength: 1 },
  { kind: 'contrast', strength: 0.5 },
  { kind: 'brightness', strength: 0.3 },
];

export interface LayerPerturbation {
  /** Mean over the perturbation family of E‖δ‖²/E‖x‖² at the layer input. */
  readonly rho: number;
  /** Per family, same order as the options. */
  readonly perKind: Readonly<Record<string, number>>;
  /** c_l of the PEM loss (see the file comment). */
  readonly coef: number;
}

function perturb(b: GraphBuilder, x: string, p: Perturbation, channels: number, rank: number, opset: number, seed: number): string {
  const all = Array.from({ length: rank }, (_, i) => i);
  const std = (): string => {
    const m = reduce(b, 'ReduceMean', x, all, opset, 1);
    const d = b.op1('Sub', [x, m]);
    return b.op1('Sqrt', [reduce(b, 'ReduceMean', b.op1('Mul', [d, d]), all, opset, 1)]);
  };
  switch (p.kind) {
    case 'noise':
      return b.op1('Add', [x, b.op1('Mul', [b.op1('RandomNormalLike', [x], { seed: A.float(seed), dtype: A.int(1) }), b.op1('Mul', [std(), b.scalar(p.strength)])])]);
    case 'brightness':
      return b.op1('Add', [x, b.op1('Mul', [std(), b.scalar(p.strength)])]);
    case 'contrast': {
      const m = reduce(b, 'ReduceMean', x, all.slice(1), opset, 1);
      return b.op1('Add', [b.op1('Mul', [b.op1('Sub', [x, m]), b.scalar(1 - p.strength)]), m]);
    }
    case 'blur': {
      if (rank !== 4) throw new TtaqError('QUANT_BAD_MODEL', `blur perturbation needs an NCHW image input, got rank ${rank}; drop 'blur' from the PEM perturbations`);
      const s = Math.max(p.strength, 1e-3);
      const k1 = [-1, 0, 1].map((t) => Math.exp(-(t * t) / (2 * s * s)));
      const tot = k1.reduce((a, c) => a + c, 0) ** 2;
      const k = new Float32Array(channels * 9);
      for (let c = 0; c < channels; c++) for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) k[c * 9 + i * 3 + j] = (k1[i]! * k1[j]!) / tot;
      const w = b.constant(f32([channels, 1, 3, 3], k), 'pem_blur_kernel');
      return b.op1('Conv', [x, w], { group: A.int(channels), pads: A.ints([1, 1, 1, 1]), kernel_shape: A.ints([3, 3]) });
    }
  }
}

/**
 * ρ_l and the PEM coefficient c_l of every weighted layer, over the first `limit` images (default 256).
 */
export async function measurePerturbation(
  model: Model,
  plan: QuantPlan,
  set: CalibSet,
  opts: { perturbations?: readonly Perturbation[]; limit?: number; batch?: number; seed?: number } = {},
): Promise<Map<string, LayerPerturbation>> {
  const family = opts.perturbations ?? DEFAULT_PERTURBATIONS;
  if (family.length === 0) throw new TtaqError('CONFIG_INVALID', 'PEM needs at least one perturbation kind');
  if (fixedBatch(model) !== undefined) throw new TtaqError('QUANT_BAD_MODEL', `model '${model.graph.name}' has a fixed batch size; PEM measurement needs a symbolic batch dimension: pass the model through withSymbolicBatch (sdk/quant/batchdim.ts, as quantize does) or re-export it with a dynamic batch axis`);
  const g = model.graph;
  const opset = getOpset(model) ?? 13;
  const input = modelInput(model);
  const nodeByName = new Map(g.nodes.map((n) => [n.name, n]));
  const layers = plan.weights.map((w) => {
    const n = nodeByName.get(w.node)!;
    return { node: w.node, x: n.inputs[0]!, y: n.outputs[0]! };
  });
  const dims = await valueDims(model, [...new Set(layers.flatMap((l) => [l.x, l.y]))], set);
  const inDims = set.dims;
  const limit = Math.min(opts.limit ?? 256, setSize(set));
  const batch = opts.batch ?? 32;
  const ratio = new Map<string, number[]>(layers.map((l) => [l.node, []]));
  const energy = new Map<string, number>(layers.map((l) => [l.node, 0]));
  const taken = [...g.initializers.keys(), ...g.nodes.flatMap((n) => [n.name, ...n.outputs]), ...g.inputs.map((i) => i.name)];
  for (let fi = 0; fi < family.length; fi++) {
    const p = family[fi]!;
    const b = new GraphBuilder(g.name, '', taken);
    const clean = b.fresh(`${input}:clean`);
    const pert = perturb(b, clean, p, inDims[1] ?? 1, inDims.length, opset, (opts.seed ?? 7) + fi);
    b.op('Concat', [clean, pert], { axis: A.int(0) }, { outputNames: [input] });
    const head = b.nodes.length;
    const outs: { node: string; sig: string; noise: string }[] = [];
    for (const l of layers) {
      const pair = b.op1('Reshape', [l.x, b.ints([2, -1])]);
      const a = b.op1('Gather', [pair, b.scalar(0, 'int64')], { axis: A.int(0) });
      const c = b.op1('Gather', [pair, b.scalar(1, 'int64')], { axis: A.int(0) });
      const d = b.op1('Sub', [c, a]);
      const o = { node: l.node, sig: reduce(b, 'ReduceSum', b.op1('Mul', [a, a]), undefined, opset), noise: reduce(b, 'ReduceSum', b.op1('Mul', [d, d]), undefined, opset) };
      b.output(o.sig);
      b.output(o.noise);
      outs.push(o);
    }
    const built = b.build();
    const inInfo = g.inputs.find((i) => i.name === input)!;
    const m: Model = {
      ...model,
      graph: {
        ...built,
        nodes: [...built.nodes.slice(0, head), ...g.nodes, ...built.nodes.slice(head)],
        inputs: [{ ...inInfo, name: clean }],
        initializers: new Map([...g.initializers, ...built.initializers]),
      },
    };
    const s = await createSession(m, { source: `PEM measurement of '${g.name}' (${p.kind})` });
    const acc = new Map(outs.map((o) => [o.node, { sig: 0, noise: 0 }]));
    let count = 0;
    try {
      const cleanSet = { ...set };
      await forBatches(s, clean, cleanSet, batch, outs.flatMap((o) => [o.sig, o.noise]), (r, _s, n) => {
        count += n;
        for (const o of outs) {
          const a = acc.get(o.node)!;
          a.sig += r[o.sig]!.data[0] as number;
          a.noise += r[o.noise]!.data[0] as number;
        }
      }, limit);
    } finally {
      await s.release();
    }
    for (const o of outs) {
      const a = acc.get(o.node)!;
      ratio.get(o.node)!.push(a.sig > 0 ? a.noise / a.sig : 0);
      if (fi === 0) energy.set(o.node, a.sig / count);
    }
  }
  const result = new Map<string, LayerPerturbation>();
  for (const l of layers) {
    const per = ratio.get(l.node)!;
    const rho = per.reduce((a, c) => a + c, 0) / per.length;
    const xd = dims.get(l.x)!;
    const yd = dims.get(l.y)!;
    const nIn = xd.slice(1).reduce((a, c) => a * c, 1);
    const pOut = yd.slice(2).reduce((a, c) => a * c, 1);
    result.set(l.node, {
      rho,
      perKind: Object.fromEntries(family.map((f, i) => [f.kind, per[i]!])),
      coef: rho * (energy.get(l.node)! / nIn) * pOut,
    });
  }
  return result;
}
