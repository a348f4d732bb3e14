// Graph edits as pure functions: each takes a graph and returns a new one (the input is never
// mutated; unchanged nodes and tensors are shared). Edits keep the nodes topologically ordered.
// Opaque sub-graph attributes (If/Loop bodies) are not rewritten: renaming a value an inner body
// reads from the outer scope is the caller's business.
import { TtaqError } from '../errors/index.ts';
import { declaredInfo, indexGraph, topoSort, valueNames } from './graph.ts';
import { f32, i64 } from './tensor.ts';
import type { DType, Graph, Node, Tensor, ValueInfo } from './types.ts';

const noNode = (g: Graph, name: string): TtaqError =>
  new TtaqError('ONNX_INVALID_GRAPH', `graph '${g.name}' has no node named '${name}'; list node names with 'ttaq inspect --json'`, { node: name });

const swap = (v: string, from: string, to: string): string => (v === from ? to : v);

/** A name based on `hint` that no value or node in the graph uses. */
export function uniqueName(g: Graph, hint: string): string {
  const used = valueNames(g);
  for (const n of g.nodes) used.add(n.name);
  if (!used.has(hint)) return hint;
  for (let i = 1; ; i++) if (!used.has(`${hint}_${i}`)) return `${hint}_${i}`;
}

/**
 * A name allocator for a batch of additions: each call returns a name based on `hint` that no value
 * or node of the graph uses and that no earlier call returned (uniqueName alone would hand out the
 * same name twice before the first is added).
 */
export function nameAllocator(g: Graph): (hint: string) => string {
  const taken = valueNames(g);
  for (const n of g.nodes) taken.add(n.name);
  return (hint) => {
    let s = hint;
    for (let i = 1; taken.has(s); i++) s = `${hint}_${i}`;
    taken.add(s);
    return s;
  };
}

export interface InsertAt {
  /** Insert right before this node. */
  readonly before?: string;
  /** Insert right after this node. */
  readonly after?: string;
}

/**
 * Inserts nodes (in the order given). Without a position they go right after the last producer of
 * their inputs; the result is re-sorted when the position would break topological order.
 */
export function insertNodes(g: Graph, nodes: readonly Node[], at: InsertAt = {}): Graph {
  if (nodes.length === 0) return g;
  let pos: number;
  if (at.before !== undefined || at.after !== undefined) {
    const name = (at.before ?? at.after)!;
    const i = g.nodes.findIndex((n) => n.name === name);
    if (i < 0) throw noNode(g, name);
    pos = at.before !== undefined ? i : i + 1;
  } else {
    const idx = indexGraph(g);
    const inserted = new Set(nodes.flatMap((n) => n.outputs));
    pos = 0;
    for (const n of nodes) for (const v of n.inputs) if (!inserted.has(v)) pos = Math.max(pos, (idx.producerIndex.get(v) ?? -1) + 1);
  }
  return topoSort({ ...g, nodes: [...g.nodes.slice(0, pos), ...nodes, ...g.nodes.slice(pos)] });
}

export const insertNode = (g: Graph, node: Node, at: InsertAt = {}): Graph => insertNodes(g, [node], at);

/** Replaces the named node by zero or more nodes at its position. */
export function replaceNode(g: Graph, name: string, replacement: Node | readonly Node[]): Graph {
  const i = g.nodes.findIndex((n) => n.name === name);
  if (i < 0) throw noNode(g, name);
  const rep = Array.isArray(replacement) ? replacement : [replacement as Node];
  return topoSort({ ...g, nodes: [...g.nodes.slice(0, i), ...rep, ...g.nodes.slice(i + 1)] });
}

/** Removes nodes by name. Values they produced are left dangling (validateGraph reports uses). */
export function removeNodes(g: Graph, names: Iterable<string>): Graph {
  const drop = new Set(names);
  for (const n of drop) if (!g.nodes.some((x) => x.name === n)) throw noNode(g, n);
  return { ...g, nodes: g.nodes.filter((n) => !drop.has(n.name)) };
}

export const removeNode = (g: Graph, name: string): Graph => removeNodes(g, [name]);

/**
 * Rewires readers of `from` to read `to` instead: node inputs, and graph outputs unless
 * `outputs: false`. Nodes named in `except` keep reading `from` (e.g. the Q of an inserted QDQ).
 */
export function replaceUses(g: Graph, from: string, to: string, opts: { except?: Iterable<string>; outputs?: boolean } = {}): Graph {
  const except = new Set(opts.except ?? []);
  const nodes = g.nodes.map((n) => (except.has(n.name) || !n.inputs.includes(from) ? n : { ...n, inputs: n.inputs.map((v) => swap(v, from, to)) }));
  const outputs = opts.outputs === false ? g.outputs : g.outputs.map((o) => (o.name === from ? { ...o, name: to } : o));
  return { ...g, nodes, outputs };
}

/** Renames a value everywhere: producer, readers, graph inputs/outputs, initializers, value infos. */
export function renameValue(g: Graph, from: string, to: string): Graph {
  if (from === to) return g;
  const names = valueNames(g);
  if (!names.has(from)) throw new TtaqError('ONNX_INVALID_GRAPH', `cannot rename '${from}': graph '${g.name}' has no such value`, { value: from });
  if (names.has(to)) throw new TtaqError('ONNX_INVALID_GRAPH', `cannot rename '${from}' to '${to}': '${to}' already exists in graph '${g.name}'; pick a fresh name (uniqueName)`, { value: to });
  const nodes = g.nodes.map((n) =>
    n.inputs.includes(from) || n.outputs.includes(from)
      ? { ...n, inputs: n.inputs.map((v) => swap(v, from, to)), outputs: n.outputs.map((v) => swap(v, from, to)) }
      : n);
  const ren = (v: ValueInfo): ValueInfo => (v.name === from ? { ...v, name: to } : v);
  const initializers = new Map<string, Tensor>([...g.initializers].map(([k, t]) => [swap(k, from, to), t]));
  const valueInfo = new Map<string, ValueInfo>([...g.valueInfo].map(([k, v]) => [swap(k, from, to), ren(v)]));
  return { ...g, nodes, inputs: g.inputs.map(ren), outputs: g.outputs.map(ren), initializers, valueInfo };
}

/**
 * Removes a single-path node (Identity, a BN being folded, a QDQ pair's half...) and connects its
 * readers to its input `inputIndex`. When its output is a graph output, the input value takes the
 * output's name so the model's interface does not change.
 */
export function bypassNode(g: Graph, name: string, inputIndex = 0): Graph {
  const node = g.nodes.find((n) => n.name === name);
  if (!node) throw noNode(g, name);
  const src = node.inputs[inputIndex];
  const out = node.outputs[0];
  if (!src || !out) throw new TtaqError('ONNX_INVALID_GRAPH', `cannot bypass node '${name}' (${node.opType}): it has no input ${inputIndex} or no output`, { node: name });
  let h = removeNode(g, name);
  if (!g.outputs.some((o) => o.name === out)) return replaceUses(h, out, src);
  const idx = indexGraph(h);
  if (idx.sources.has(src) || g.outputs.some((o) => o.name === src)) {
    throw new TtaqError('ONNX_INVALID_GRAPH', `cannot bypass node '${name}': its output '${out}' is a graph output and its input '${src}' is a graph input, initializer or output; keep an Identity instead`, { node: name });
  }
  h = { ...h, valueInfo: new Map([...h.valueInfo].filter(([k]) => k !== out)) };
  return renameValue(h, src, out);
}

/**
 * Makes intermediate values graph outputs (skipping ones that already are). Each needs a dtype:
 * from `infos`, else what the graph declares (value_info, inputs, initializers).
 */
export function exposeOutputs(g: Graph, names: Iterable<string>, infos?: ReadonlyMap<string, ValueInfo>): Graph {
  const have = new Set(g.outputs.map((o) => o.name));
  const known = valueNames(g);
  const added: ValueInfo[] = [];
  for (const name of names) {
    if (have.has(name)) continue;
    if (!known.has(name)) throw new TtaqError('ONNX_INVALID_GRAPH', `cannot expose '${name}': graph '${g.name}' has no such value`, { value: name });
    const info = infos?.get(name) ?? declaredInfo(g, name);
    if (!info) throw new TtaqError('ONNX_DYNAMIC_SHAPE', `cannot expose '${name}' as an output: its dtype is unknown; run inferShapes and pass its result as infos`, { value: name });
    added.push({ ...info, name });
    have.add(name);
  }
  return added.length ? { ...g, outputs: [...g.outputs, ...added] } : g;
}

/** Removes nodes whose outputs nothing reads (transitively), and initializers nothing reads. */
export function removeUnused(g: Graph): Graph {
  const needed = new Set<string>(g.outputs.map((o) => o.name));
  const keep: Node[] = [];
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i]!;
    if (n.outputs.some((o) => needed.has(o))) {
      keep.push(n);
      for (const v of n.inputs) if (v !== '') needed.add(v);
    }
  }
  keep.reverse();
  const initializers = new Map([...g.initializers].filter(([k]) => needed.has(k)));
  return { ...g, nodes: keep, initializers };
}

/**
 * The tensor a Constant node yields, from whichever of ONNX's value attributes it carries: `value`
 * (a tensor), `value_float` / `value_int` (a scalar of float32 / int64), `value_floats` /
 * `value_ints` (a 1-D tensor). Undefined for other nodes and for the kinds the IR has no dense
 * numeric tensor for (`value_string(s)`, `sparse_value`).
 */
export function constantValue(n: Node): Tensor | undefined {
  if (n.opType !== 'Constant' || (n.domain !== '' && n.domain !== 'ai.onnx')) return undefined;
  const a = n.attrs;
  if (a.value?.kind === 'tensor') return a.value.value;
  if (a.value_float?.kind === 'float') return f32([], [a.value_float.value]);
  if (a.value_floats?.kind === 'floats') return f32([a.value_floats.value.length], a.value_floats.value);
  if (a.value_int?.kind === 'int') return i64([], [a.value_int.value]);
  if (a.value_ints?.kind === 'ints') return i64([a.value_ints.value.length], a.value_ints.value);
  return undefined;
}

/**
 * Constant nodes turned into initializers of the same name (PyTorch exports write Reshape shapes,
 * scalars and the like as Constants; as initializers they are plain constants to every pass that
 * reads them, and no Constant node lands among the ops of a block). A Constant whose value is a
 * graph output, or whose kind constantValue does not read, stays a node.
 */
export function foldConstants(g: Graph): Graph {
  const outputs = new Set(g.outputs.map((o) => o.name));
  const initializers = new Map(g.initializers);
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    const out = n.outputs[0];
    const t = out && n.outputs.length === 1 && !outputs.has(out) && !initializers.has(out) ? constantValue(n) : undefined;
    if (t) initializers.set(out!, t);
    else nodes.push(n);
  }
  return nodes.length === g.nodes.length ? g : { ...g, nodes, initializers };
}

/** Adds (or replaces) an initializer. */
export function setInitializer(g: Graph, name: string, t: Tensor): Graph {
  const initializers = new Map(g.initializers);
  initializers.set(name, t);
  return { ...g, initializers };
}

/** Declares a value's type/shape in value_info. */
export function setValueInfo(g: Graph, name: string, dtype: DType, shape?: ValueInfo['shape']): Graph {
  const valueInfo = new Map(g.valueInfo);
  valueInfo.set(name, shape ? { name, dtype, shape } : { name, dtype });
  return { ...g, valueInfo };
}
