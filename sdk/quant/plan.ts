// Quantizer placement: which weights and which activation values are quantized, at what width.
// - every Conv/Gemm/MatMul with an initializer weight gets a per-output-channel weight quantizer;
// - every activation input of a Conv/Gemm/MatMul gets a per-tensor quantizer (one per value, shared
//   by all its consumers; unsigned with z = 0 where the value is provably non-negative, else
//   asymmetric unsigned with a zero point);
// - the network input and the first and last weighted layers stay at 8 bit by default;
// - per-node overrides (by exact name or regular expression) change widths or skip a node.
import { TtaqError } from '../errors/index.ts';
import type { Graph, Node } from '../onnx/types.ts';
import { indexGraph, nonNegativeValues } from './graphutil.ts';
import { checkActBits, checkWeightBits, type QuantSpec } from './quantizer.ts';

export const WEIGHTED_OPS = new Set(['Conv', 'Gemm', 'MatMul']);

export interface LayerOverride {
  /** Node name, or a regular expression source matched against node names (anchored by the caller's choice). */
  readonly match: string | RegExp;
  readonly wBits?: number;
  readonly aBits?: number;
  /** Leave the node in float. */
  readonly skip?: boolean;
}

export interface PlanOptions {
  readonly wBits: number;
  readonly aBits: number;
  /** Width of the first and last weighted layers (weights and inputs); null keeps them at wBits/aBits. Default 8. */
  readonly firstLastBits?: number | null;
  /** Width of the network-input quantizer; default 8. */
  readonly inputBits?: number;
  /** Symmetric signed weights instead of asymmetric (default false). */
  readonly weightSymmetric?: boolean;
  readonly overrides?: readonly LayerOverride[];
}

export interface WeightSite {
  readonly node: string;
  readonly opType: string;
  /** Initializer holding the float weight. */
  readonly weight: string;
  readonly dims: readonly number[];
  /** Output-channel axis of the weight. */
  readonly axis: number;
  readonly spec: QuantSpec;
  readonly bias?: string;
}

export interface ActSite {
  /** The quantized value (a graph input or a node output). */
  readonly value: string;
  readonly spec: QuantSpec;
  /** Nodes whose input it feeds. */
  readonly consumers: readonly string[];
  readonly isNetworkInput: boolean;
}

export interface QuantPlan {
  readonly weights: readonly WeightSite[];
  readonly acts: readonly ActSite[];
}

const matches = (o: LayerOverride, name: string): boolean =>
  typeof o.match === 'string' ? o.match === name || safeRegex(o.match).test(name) : o.match.test(name);

function safeRegex(src: string): RegExp {
  try {
    return new RegExp(`^(?:${src})$`);
  } catch (e) {
    throw new TtaqError('CONFIG_INVALID', `override pattern '${src}' is not a valid regular expression: ${(e as Error).message}; quote it or escape special characters`);
  }
}

/** The weight input of a weighted node (index) and its output-channel axis, or null when it has none. */
export function weightOf(n: Node, g: Graph): { index: number; axis: number } | null {
  if (n.opType === 'Conv') return g.initializers.has(n.inputs[1] ?? '') ? { index: 1, axis: 0 } : null;
  if (n.opType === 'Gemm') {
    if (!g.initializers.has(n.inputs[1] ?? '')) return null;
    const tb = n.attrs.transB;
    return { index: 1, axis: tb && tb.kind === 'int' && tb.value ? 0 : 1 };
  }
  if (n.opType === 'MatMul') {
    const w = g.initializers.get(n.inputs[1] ?? '');
    return w ? { index: 1, axis: w.dims.length - 1 } : null;
  }
  return null;
}

export function makePlan(g: Graph, opts: PlanOptions): QuantPlan {
  checkWeightBits(opts.wBits, '--w-bits');
  checkActBits(opts.aBits, '--a-bits');
  const firstLast = opts.firstLastBits === undefined ? 8 : opts.firstLastBits;
  if (firstLast !== null) { checkWeightBits(firstLast, 'first/last layer width'); checkActBits(firstLast, 'first/last layer width'); }
  const inputBits = checkActBits(opts.inputBits ?? 8, 'network input width');
  const overrides = opts.overrides ?? [];
  const idx = indexGraph(g);
  const nonNeg = nonNegativeValues(g);
  const graphInputs = new Set(g.inputs.map((i) => i.name));

  const weighted = g.nodes.filter((n) => WEIGHTED_OPS.has(n.opType));
  const withWeights = weighted.filter((n) => weightOf(n, g));
  const first = withWeights[0]?.name;
  const last = withWeights.at(-1)?.name;

  // an override that names no weighted node is a typo: quantizing at the default widths instead
  // would look like a successful run of what was asked
  for (const o of overrides) {
    if (weighted.some((n) => matches(o, n.name))) continue;
    const text = typeof o.match === 'string' ? o.match : o.match.source;
    const near = weighted.map((n) => n.name).filter((name) => name.toLowerCase().includes(text.toLowerCase().replace(/[^a-z0-9]+/g, '').slice(0, 6)));
    const names = (near.length ? near : weighted.map((n) => n.name)).slice(0, 8);
    throw new TtaqError('CONFIG_INVALID', `override '${text}' matches none of the ${weighted.length} Conv/Gemm/MatMul nodes; use a node name or a regular expression over them (${near.length ? 'similar' : 'for example'}: ${names.join(', ')}${weighted.length > names.length ? ', ...' : ''}; \`ttaq inspect <model.onnx>\` lists them with their MACs)`);
  }
  const weights: WeightSite[] = [];
  const actBits = new Map<string, number>();
  const actConsumers = new Map<string, string[]>();
  for (const n of weighted) {
    const ov = overrides.filter((o) => matches(o, n.name));
    if (ov.some((o) => o.skip)) continue;
    const edge = firstLast !== null && (n.name === first || n.name === last);
    let wb = edge ? firstLast! : opts.wBits;
    let ab = edge ? firstLast! : opts.aBits;
    for (const o of ov) {
      if (o.wBits !== undefined) wb = checkWeightBits(o.wBits, `override for node '${n.name}'`);
      if (o.aBits !== undefined) ab = checkActBits(o.aBits, `override for node '${n.name}'`);
    }
    const w = weightOf(n, g);
    if (w) {
      const name = n.inputs[w.index]!;
      const t = g.initializers.get(name)!;
      if (t.dtype !== 'float32') {
        throw new TtaqError('QUANT_BAD_MODEL', `node '${n.name}': weight '${name}' is ${t.dtype}; the quantizer takes float32 models (export the FP32 model, not an already quantized one)`);
      }
      const sym = opts.weightSymmetric ?? false;
      const bias = n.opType !== 'MatMul' && n.inputs[2] && g.initializers.has(n.inputs[2]) ? n.inputs[2] : undefined;
      weights.push({
        node: n.name, opType: n.opType, weight: name, dims: t.dims, axis: w.axis,
        spec: { bits: wb, signed: sym, symmetric: sym, axis: w.axis },
        ...(bias ? { bias } : {}),
      });
    }
    n.inputs.forEach((v, i) => {
      if (!v || g.initializers.has(v) || (w && i === w.index) || i >= 2) return;
      const bits = graphInputs.has(v) ? Math.max(inputBits, ab) : ab;
      actBits.set(v, Math.max(actBits.get(v) ?? 0, bits));
      const list = actConsumers.get(v) ?? [];
      list.push(n.name);
      actConsumers.set(v, list);
    });
  }
  const acts: ActSite[] = [...actBits].map(([value, bits]) => {
    const pos = nonNeg.has(value);
    return {
      value,
      spec: { bits, signed: false, symmetric: pos },
      consumers: actConsumers.get(value) ?? [],
      isNetworkInput: graphInputs.has(value),
    };
  });
  // deterministic order: by the position of the value's producer
  const order = new Map<string, number>();
  g.inputs.forEach((v, i) => order.set(v.name, -1 - i));
  g.nodes.forEach((n, i) => n.outputs.forEach((o) => order.set(o, i)));
  acts.sort((a, b) => (order.get(a.value) ?? 0) - (order.get(b.value) ?? 0));
  if (weights.length === 0) {
    throw new TtaqError('QUANT_BAD_MODEL', `graph '${g.name}' has no Conv/Gemm/MatMul with an initializer weight; nothing to quantize`);
  }
  void idx;
  return { weights, acts };
}
