// Small read-only graph queries the quantizer needs (producers, consumers, non-negativity).
import type { Graph, Node } from '../onnx/types.ts';

export interface GraphIndex {
  readonly producer: ReadonlyMap<string, Node>;
  readonly consumers: ReadonlyMap<string, readonly Node[]>;
  readonly nodeByName: ReadonlyMap<string, Node>;
  readonly outputs: ReadonlySet<string>;
}

export function indexGraph(g: Graph): GraphIndex {
  const producer = new Map<string, Node>();
  const consumers = new Map<string, Node[]>();
  const nodeByName = new Map<string, Node>();
  for (const n of g.nodes) {
    nodeByName.set(n.name, n);
    for (const o of n.outputs) if (o) producer.set(o, n);
    for (const i of n.inputs) {
      if (!i) continue;
      const list = consumers.get(i);
      if (list) { if (!list.includes(n)) list.push(n); } else consumers.set(i, [n]);
    }
  }
  return { producer, consumers, nodeByName, outputs: new Set(g.outputs.map((o) => o.name)) };
}

const PASS_THROUGH = new Set([
  'MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool', 'Flatten', 'Reshape', 'Squeeze', 'Unsqueeze',
  'Transpose', 'Identity', 'Resize', 'Upsample', 'Pad', 'Slice', 'Gather', 'ReduceMean', 'ReduceMax', 'ReduceSum',
]);

/** Values that are provably non-negative (ReLU outputs and what only pools or reshapes them). */
export function nonNegativeValues(g: Graph): Set<string> {
  const nn = new Set<string>();
  const constNonNeg = (name: string): boolean => {
    const t = g.initializers.get(name);
    if (!t) return false;
    for (let i = 0; i < t.data.length; i++) if (Number(t.data[i]) < 0) return false;
    return true;
  };
  for (const n of g.nodes) {
    const x = n.inputs[0] ?? '';
    let pos = false;
    switch (n.opType) {
      case 'Relu': case 'Sigmoid': case 'Softmax': case 'Abs': case 'Exp': case 'Softplus':
        pos = true; break;
      case 'Clip': {
        const lo = n.inputs[1];
        pos = !!lo && constNonNeg(lo);
        break;
      }
      case 'Add': case 'Mul': case 'Concat': case 'Max':
        pos = n.inputs.filter(Boolean).every((i) => nn.has(i) || constNonNeg(i));
        break;
      default:
        pos = PASS_THROUGH.has(n.opType) && nn.has(x);
    }
    if (pos) for (const o of n.outputs) if (o) nn.add(o);
  }
  return nn;
}

/** Initializer names a set of nodes reads. */
export function initializersOf(g: Graph, nodes: readonly Node[]): string[] {
  const out = new Set<string>();
  for (const n of nodes) for (const i of n.inputs) if (i && g.initializers.has(i)) out.add(i);
  return [...out];
}
