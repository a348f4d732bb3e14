// Graph analysis: who produces and who consumes each value, topological order, reachability.
// Pure functions over the readonly IR. Values referenced only inside opaque sub-graph attributes
// (If/Loop bodies) are invisible here.
import { TtaqError } from '../errors/index.ts';
import type { DType, Graph, Node, ValueInfo } from './types.ts';

export interface GraphIndex {
  /** Value name -> the node producing it. */
  readonly producer: ReadonlyMap<string, Node>;
  /** Value name -> position of its producer in `g.nodes`. */
  readonly producerIndex: ReadonlyMap<string, number>;
  /** Value name -> nodes reading it (a node reading a value twice is listed once). */
  readonly consumers: ReadonlyMap<string, readonly Node[]>;
  readonly nodeByName: ReadonlyMap<string, Node>;
  /** Graph input and initializer names. */
  readonly sources: ReadonlySet<string>;
}

export function indexGraph(g: Graph): GraphIndex {
  const producer = new Map<string, Node>();
  const producerIndex = new Map<string, number>();
  const consumers = new Map<string, Node[]>();
  const nodeByName = new Map<string, Node>();
  g.nodes.forEach((n, i) => {
    nodeByName.set(n.name, n);
    for (const o of n.outputs) {
      if (o === '' || producer.has(o)) continue;
      producer.set(o, n);
      producerIndex.set(o, i);
    }
    for (const v of new Set(n.inputs)) {
      if (v === '') continue;
      const list = consumers.get(v);
      if (list) list.push(n);
      else consumers.set(v, [n]);
    }
  });
  const sources = new Set<string>([...g.inputs.map((v) => v.name), ...g.initializers.keys()]);
  return { producer, producerIndex, consumers, nodeByName, sources };
}

/** Value name -> producing node. */
export const producers = (g: Graph): ReadonlyMap<string, Node> => indexGraph(g).producer;

/** Value name -> consuming nodes. */
export const consumers = (g: Graph): ReadonlyMap<string, readonly Node[]> => indexGraph(g).consumers;

/** Every value name in the graph: inputs, initializers and node outputs. */
export function valueNames(g: Graph): Set<string> {
  const s = new Set<string>([...g.inputs.map((v) => v.name), ...g.initializers.keys()]);
  for (const n of g.nodes) for (const o of n.outputs) if (o !== '') s.add(o);
  return s;
}

/**
 * Nodes in a topological order, as close to the current order as possible (stable). Values no
 * node produces count as available (validateGraph reports them). Throws ONNX_INVALID_GRAPH naming
 * the nodes on a cycle.
 */
export function topoOrder(g: Graph): Node[] {
  const idx = indexGraph(g);
  const pending = new Map<Node, number>();
  for (const n of g.nodes) {
    let deps = 0;
    for (const v of new Set(n.inputs)) if (v !== '' && idx.producer.has(v) && idx.producer.get(v) !== n) deps++;
    pending.set(n, deps);
  }
  const position = new Map(g.nodes.map((n, i) => [n, i]));
  // Ready nodes sorted by descending original position, so pop() yields the earliest: stable.
  const ready: Node[] = g.nodes.filter((n) => pending.get(n) === 0).reverse();
  const push = (n: Node): void => {
    const p = position.get(n)!;
    let lo = 0, hi = ready.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (position.get(ready[mid]!)! > p) lo = mid + 1;
      else hi = mid;
    }
    ready.splice(lo, 0, n);
  };
  const out: Node[] = [];
  while (ready.length) {
    const n = ready.pop()!;
    out.push(n);
    for (const o of new Set(n.outputs)) {
      if (o === '' || idx.producer.get(o) !== n) continue;
      for (const c of idx.consumers.get(o) ?? []) {
        if (c === n) continue;
        const left = pending.get(c)! - 1;
        pending.set(c, left);
        if (left === 0) push(c);
      }
    }
  }
  if (out.length !== g.nodes.length) {
    const stuck = g.nodes.filter((n) => pending.get(n)! > 0).map((n) => `'${n.name}' (${n.opType})`);
    throw new TtaqError('ONNX_INVALID_GRAPH', `graph '${g.name}' has a cycle through ${stuck.slice(0, 8).join(', ')}${stuck.length > 8 ? ` and ${stuck.length - 8} more` : ''}; an edit wired a node's output back into its inputs`, { nodes: stuck });
  }
  return out;
}

/** True when every node's inputs are produced before it. */
export function isTopologicallySorted(g: Graph): boolean {
  const idx = indexGraph(g);
  return g.nodes.every((n, i) => n.inputs.every((v) => v === '' || !idx.producerIndex.has(v) || idx.producerIndex.get(v)! < i));
}

/** The graph with its nodes in topological order (the same graph when already sorted). */
export function topoSort(g: Graph): Graph {
  if (isTopologicallySorted(g)) return g;
  return { ...g, nodes: topoOrder(g) };
}

/** Names of the nodes that `values` depend on (transitively), stopping at `stopAt` values. */
export function ancestorNodes(g: Graph, values: Iterable<string>, stopAt: ReadonlySet<string> = new Set()): Set<string> {
  const idx = indexGraph(g);
  const seen = new Set<string>();
  const stack = [...values];
  const visited = new Set<string>();
  while (stack.length) {
    const v = stack.pop()!;
    if (visited.has(v) || stopAt.has(v)) continue;
    visited.add(v);
    const n = idx.producer.get(v);
    if (!n || seen.has(n.name)) continue;
    seen.add(n.name);
    for (const i of n.inputs) if (i !== '') stack.push(i);
  }
  return seen;
}

/** Names of the nodes that depend on `values` (transitively). */
export function descendantNodes(g: Graph, values: Iterable<string>): Set<string> {
  const idx = indexGraph(g);
  const seen = new Set<string>();
  const stack = [...values];
  const visited = new Set<string>();
  while (stack.length) {
    const v = stack.pop()!;
    if (visited.has(v)) continue;
    visited.add(v);
    for (const n of idx.consumers.get(v) ?? []) {
      if (seen.has(n.name)) continue;
      seen.add(n.name);
      for (const o of n.outputs) if (o !== '') stack.push(o);
    }
  }
  return seen;
}

/** What the graph itself declares about a value: input, output, initializer or value_info entry. */
export function declaredInfo(g: Graph, name: string): ValueInfo | undefined {
  const t = g.initializers.get(name);
  if (t) return { name, dtype: t.dtype, shape: [...t.dims] };
  return g.inputs.find((v) => v.name === name) ?? g.valueInfo.get(name) ?? g.outputs.find((v) => v.name === name);
}

/** The dtype the graph declares for a value, if any. */
export const declaredDtype = (g: Graph, name: string): DType | undefined => declaredInfo(g, name)?.dtype;

/** Nodes by op type, e.g. for histograms. */
export function opHistogram(g: Graph): Map<string, number> {
  const h = new Map<string, number>();
  for (const n of g.nodes) {
    const k = n.domain ? `${n.domain}.${n.opType}` : n.opType;
    h.set(k, (h.get(k) ?? 0) + 1);
  }
  return h;
}
