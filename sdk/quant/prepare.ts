// Graph preparation. Constant nodes become initializers (foldConstants): a PyTorch export's
// Reshape shape or scalar written as a Constant is then a plain constant to planning, calibration
// and the gradient rules, and no Constant, which has no gradient rule, lands in a reconstruction
// block. Batch norm stays a float op after its conv so test-time adaptation has a place. A model
// exported with BN folded (Conv with bias, no BatchNormalization anywhere) gets an equivalent BN
// after every such conv: running mean μ and variance σ² of the conv output measured on
// calibration data, γ = sqrt(σ² + ε), β = μ, so BN(x) = x exactly on any input, and adaptation
// that re-estimates statistics or tunes γ/β works as on a model trained with BN.
import { TtaqError } from '../errors/index.ts';
import { A } from '../onnx/builder.ts';
import { foldConstants } from '../onnx/edit.ts';
import { f32 } from '../onnx/tensor.ts';
import type { Model, Node, Tensor } from '../onnx/types.ts';
import { indexGraph } from './graphutil.ts';
import { collectStats, type CalibSet } from './stats.ts';

export type BnInsertion = 'auto' | 'always' | 'never';

export interface PreparedModel {
  readonly model: Model;
  /** BatchNormalization nodes of the prepared model (adaptation sites), in graph order. */
  readonly bnNodes: readonly string[];
  /** BNs this step inserted (empty when the model already had BN). */
  readonly inserted: readonly string[];
}

const BN_EPS = 1e-5;

/** Convs whose output is not normalised by a BN (and is not a graph output). */
export function convsWithoutBn(model: Model): Node[] {
  const g = model.graph;
  const idx = indexGraph(g);
  return g.nodes.filter((n) => {
    if (n.opType !== 'Conv') return false;
    const out = n.outputs[0]!;
    if (idx.outputs.has(out)) return false;
    const cons = idx.consumers.get(out) ?? [];
    return cons.length > 0 && !cons.some((c) => c.opType === 'BatchNormalization');
  });
}

export async function prepareModel(source: Model, set: CalibSet | undefined, mode: BnInsertion = 'auto', opts: { limit?: number } = {}): Promise<PreparedModel> {
  const folded = foldConstants(source.graph);
  const model: Model = folded === source.graph ? source : { ...source, graph: folded };
  const g = model.graph;
  const existing = g.nodes.filter((n) => n.opType === 'BatchNormalization');
  for (const n of existing) {
    const tm = n.attrs.training_mode;
    if ((tm && tm.kind === 'int' && tm.value) || n.outputs.filter(Boolean).length > 1) {
      throw new TtaqError('QUANT_BAD_MODEL', `BatchNormalization '${n.name}' is in training mode; quantize the inference form of the model (BN on running statistics)`);
    }
  }
  const targets = mode === 'never' || (mode === 'auto' && existing.length > 0) ? [] : convsWithoutBn(model);
  if (targets.length === 0) return { model, bnNodes: existing.map((n) => n.name), inserted: [] };
  if (!set) {
    throw new TtaqError('QUANT_CALIB_MISSING', `model '${g.name}' has BN folded into its convs; inserting adaptation BNs needs calibration images (pass --calib)`);
  }
  const stats = await collectStats(model, targets.map((n) => n.outputs[0]!), set, opts.limit !== undefined ? { limit: opts.limit } : {});
  const taken = new Set<string>([...g.initializers.keys(), ...g.nodes.flatMap((n) => [n.name, ...n.outputs]), ...g.inputs.map((i) => i.name)]);
  const fresh = (hint: string): string => { let n = hint; let k = 0; while (taken.has(n)) n = `${hint}_${++k}`; taken.add(n); return n; };
  const inits = new Map<string, Tensor>(g.initializers);
  const nodes: Node[] = [];
  const inserted: string[] = [];
  const renameOut = new Map<string, string>();
  for (const n of g.nodes) {
    const ins = n.inputs.map((v) => renameOut.get(v) ?? v);
    const cur = ins.some((v, i) => v !== n.inputs[i]) ? { ...n, inputs: ins } : n;
    if (!targets.includes(n)) { nodes.push(cur); continue; }
    const out = n.outputs[0]!;
    const st = stats.get(out)!;
    const c = st.mean.length;
    const raw = fresh(`${out}:pre_bn`);
    const bnName = fresh(`${n.name}.bn`);
    const gamma = Float32Array.from(st.variance, (v) => Math.sqrt(v + BN_EPS));
    const scale = fresh(`${bnName}.scale`); inits.set(scale, f32([c], gamma));
    const bias = fresh(`${bnName}.bias`); inits.set(bias, f32([c], st.mean));
    const mean = fresh(`${bnName}.mean`); inits.set(mean, f32([c], st.mean));
    const vr = fresh(`${bnName}.var`); inits.set(vr, f32([c], st.variance));
    nodes.push({ ...cur, outputs: [raw, ...cur.outputs.slice(1)] });
    nodes.push({ name: bnName, opType: 'BatchNormalization', domain: '', inputs: [raw, scale, bias, mean, vr], outputs: [out], attrs: { epsilon: A.float(BN_EPS) } });
    inserted.push(bnName);
  }
  const prepared: Model = { ...model, graph: { ...g, nodes, initializers: inits } };
  const bnNodes = nodes.filter((n) => n.opType === 'BatchNormalization').map((n) => n.name);
  return { model: prepared, bnNodes, inserted };
}
