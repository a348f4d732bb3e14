// Automatic block partition for reconstruction. A cut is a point in the (topologically ordered)
// node list where exactly one non-constant value is live: everything after it depends on the
// graph only through that value. Runs of nodes between cuts are single-entry single-exit regions
// (a residual block with its skip connection is one run). Runs are grouped into blocks so that each
// block holds at least one weighted layer: element-wise runs (BN, ReLU, Add) join the block before
// them, pooling/reshaping runs join the block after them (the head: pool, flatten, fc).
import { TtaqError } from '../errors/index.ts';
import type { Graph, Node } from '../onnx/types.ts';

export interface Block {
  /** A readable name: the common prefix of its node names (e.g. 'layer2.0'), else 'block<i>'. */
  readonly name: string;
  readonly index: number;
  readonly nodes: readonly string[];
  /** The single value entering the block. */
  readonly input: string;
  /** The single value leaving it. */
  readonly output: string;
  /** Weighted nodes (quantized layers) inside. */
  readonly weighted: readonly string[];
}

const PRE_OPS = new Set([
  'MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool', 'Flatten', 'Reshape', 'Pad', 'Transpose',
  'Squeeze', 'Unsqueeze', 'Resize', 'Upsample',
]);

interface Segment { nodes: Node[]; input: string; output: string }

/** Splits the node list at every point where a single value is live. */
export function segments(g: Graph): Segment[] {
  const nodes = g.nodes;
  const isConst = (v: string): boolean => g.initializers.has(v);
  const lastUse = new Map<string, number>();
  nodes.forEach((n, i) => n.inputs.forEach((v) => { if (v && !isConst(v)) lastUse.set(v, i); }));
  for (const o of g.outputs) lastUse.set(o.name, Infinity);
  const live = new Set<string>();
  for (const inp of g.inputs) if (!isConst(inp.name) && lastUse.has(inp.name)) live.add(inp.name);
  if (live.size !== 1) {
    throw new TtaqError('QUANT_BAD_MODEL', `graph '${g.name}' has ${live.size} data inputs; block reconstruction needs exactly one network input`);
  }
  const segs: Segment[] = [];
  let cur: Node[] = [];
  let entry = [...live][0]!;
  nodes.forEach((n, i) => {
    cur.push(n);
    for (const v of n.inputs) if (v && (lastUse.get(v) ?? -1) <= i) live.delete(v);
    for (const o of n.outputs) if (o && lastUse.has(o) && (lastUse.get(o) ?? -1) > i) live.add(o);
    if (live.size === 1) {
      const exit = [...live][0]!;
      if (exit !== entry || cur.length) segs.push({ nodes: cur, input: entry, output: exit });
      cur = [];
      entry = exit;
    }
  });
  if (cur.length) {
    throw new TtaqError('QUANT_BAD_MODEL', `graph '${g.name}': the nodes after '${cur[0]!.name}' do not end in a single output value; block reconstruction needs a single-output network`);
  }
  return segs;
}

function commonPrefix(names: readonly string[]): string {
  if (names.length === 0) return '';
  let p = names[0]!;
  for (const n of names) while (!n.startsWith(p)) p = p.slice(0, -1);
  return p.replace(/[._/-]+[^._/-]*$/, '').replace(/[._/-]+$/, '');
}

/** Partitions a graph into reconstruction blocks; `weightedNodes` are the quantized layers. */
export function partitionBlocks(g: Graph, weightedNodes: ReadonlySet<string>): Block[] {
  const segs = segments(g);
  const groups: Segment[][] = [];
  let pending: Segment[] = [];
  for (const s of segs) {
    const hasW = s.nodes.some((n) => weightedNodes.has(n.name));
    const pre = s.nodes.every((n) => PRE_OPS.has(n.opType));
    if (hasW) {
      groups.push([...pending, s]);
      pending = [];
    } else if (pre || groups.length === 0) {
      pending.push(s);
    } else if (pending.length) {
      pending.push(s);
    } else {
      groups.at(-1)!.push(s);
    }
  }
  if (groups.length === 0) {
    throw new TtaqError('QUANT_BAD_MODEL', `graph '${g.name}' has no quantized layer to reconstruct`);
  }
  if (pending.length) groups.at(-1)!.push(...pending);
  const used = new Set<string>();
  return groups.map((segList, index) => {
    const nodes = segList.flatMap((s) => s.nodes);
    const names = nodes.map((n) => n.name);
    const weighted = names.filter((n) => weightedNodes.has(n));
    let name = weighted.length === 1 ? weighted[0]!.replace(/\.(conv|weight)$/, '') : commonPrefix(weighted);
    if (!name || used.has(name)) name = weighted[0] ?? `block${index}`;
    if (used.has(name)) name = `block${index}`;
    used.add(name);
    return {
      name,
      index,
      nodes: names,
      input: segList[0]!.input,
      output: segList.at(-1)!.output,
      weighted: names.filter((n) => weightedNodes.has(n)),
    };
  });
}

/** The sub-graph of one block: its nodes, its initializers, its input and output. */
export function blockGraph(g: Graph, b: Block): Graph {
  const set = new Set(b.nodes);
  const nodes = g.nodes.filter((n) => set.has(n.name));
  const inits = new Map<string, Graph['initializers'] extends ReadonlyMap<string, infer T> ? T : never>();
  for (const n of nodes) for (const i of n.inputs) { const t = i && g.initializers.get(i); if (t) inits.set(i, t); }
  const vi = (name: string) => g.valueInfo.get(name) ?? g.inputs.find((v) => v.name === name) ?? g.outputs.find((v) => v.name === name) ?? { name, dtype: 'float32' as const };
  return {
    name: `${g.name}:${b.name}`,
    nodes,
    inputs: [{ ...vi(b.input), name: b.input }],
    outputs: [{ name: b.output, dtype: 'float32' }],
    initializers: inits,
    valueInfo: new Map(),
  };
}
