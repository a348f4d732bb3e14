// The sub-graph between two cuts: given the values to treat as inputs and the values wanted as
// outputs, keep exactly the nodes that compute the outputs from those inputs and the initializers
// they read. Block reconstruction and autodiff work on such pieces.
import { TtaqError } from '../errors/index.ts';
import { declaredInfo, indexGraph } from './graph.ts';
import type { Graph, Model, Node, Tensor, ValueInfo } from './types.ts';

export interface ExtractOptions {
  /** Types/shapes for cut values the graph does not declare (e.g. from inferShapes). */
  readonly infos?: ReadonlyMap<string, ValueInfo>;
  /** Name of the new graph (default: `<name>_extract`). */
  readonly name?: string;
}

/**
 * Extracts the sub-graph computing `outputs` from `inputs`. A cut input may be any value,
 * initializers included (they then become graph inputs, e.g. to differentiate by them). Throws
 * ONNX_INVALID_GRAPH when an output depends on a graph input outside the cut, and
 * ONNX_DYNAMIC_SHAPE when a cut value's dtype is unknown.
 */
export function extractSubgraph(g: Graph, inputs: readonly string[], outputs: readonly string[], opts: ExtractOptions = {}): Graph {
  const idx = indexGraph(g);
  const cut = new Set(inputs);
  const graphInputs = new Set(g.inputs.map((v) => v.name));
  const info = (name: string, role: string): ValueInfo => {
    const v = opts.infos?.get(name) ?? declaredInfo(g, name);
    if (!v) {
      throw new TtaqError('ONNX_DYNAMIC_SHAPE', `cannot extract: the dtype of ${role} '${name}' is unknown; run inferShapes on the model and pass the result as infos`, { value: name });
    }
    return { ...v, name };
  };
  for (const v of [...inputs, ...outputs]) {
    if (!idx.producer.has(v) && !idx.sources.has(v)) throw new TtaqError('ONNX_INVALID_GRAPH', `cannot extract: graph '${g.name}' has no value '${v}'`, { value: v });
  }

  const keepNodes = new Set<Node>();
  const usedInits = new Set<string>();
  const visited = new Set<string>();
  const stack = [...outputs];
  while (stack.length) {
    const v = stack.pop()!;
    if (v === '' || visited.has(v)) continue;
    visited.add(v);
    if (cut.has(v)) continue;
    if (g.initializers.has(v)) { usedInits.add(v); continue; }
    const n = idx.producer.get(v);
    if (!n) {
      if (graphInputs.has(v)) {
        throw new TtaqError('ONNX_INVALID_GRAPH', `cannot extract: the outputs [${outputs.join(', ')}] depend on graph input '${v}', which is not among the cut inputs [${inputs.join(', ')}]; add it to the inputs`, { value: v });
      }
      continue;
    }
    if (keepNodes.has(n)) continue;
    keepNodes.add(n);
    for (const i of n.inputs) stack.push(i);
  }

  const initializers = new Map<string, Tensor>();
  for (const [k, t] of g.initializers) if (usedInits.has(k)) initializers.set(k, t);
  const valueInfo = new Map<string, ValueInfo>();
  const nodes = g.nodes.filter((n) => keepNodes.has(n));
  const inside = new Set(nodes.flatMap((n) => [...n.inputs, ...n.outputs]));
  for (const [k, v] of g.valueInfo) if (inside.has(k) && !cut.has(k)) valueInfo.set(k, v);
  return {
    name: opts.name ?? `${g.name}_extract`,
    nodes,
    inputs: inputs.map((v) => info(v, 'cut input')),
    outputs: outputs.map((v) => info(v, 'cut output')),
    initializers,
    valueInfo,
  };
}

/** extractSubgraph on a model, keeping its opsets and metadata. */
export function extractModel(m: Model, inputs: readonly string[], outputs: readonly string[], opts: ExtractOptions = {}): Model {
  return { ...m, graph: extractSubgraph(m.graph, inputs, outputs, opts) };
}
