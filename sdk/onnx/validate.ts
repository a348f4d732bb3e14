// Structural validation of a graph: every value produced once, every input defined, no cycles,
// unique names, outputs that exist, initializers whose data fits their shape. Returns the list of
// problems (empty when valid) so callers can print them all at once.
import { TtaqError } from '../errors/index.ts';
import { indexGraph, topoOrder } from './graph.ts';
import { numel } from './tensor.ts';
import type { Graph, Model } from './types.ts';
import { checkModelVersions } from './versions.ts';

export type ProblemKind =
  | 'duplicate-node-name'
  | 'duplicate-value'
  | 'undefined-value'
  | 'cycle'
  | 'not-topological'
  | 'missing-output'
  | 'duplicate-output'
  | 'bad-initializer'
  | 'empty-name'
  | 'version';

export interface Problem {
  readonly kind: ProblemKind;
  readonly message: string;
  readonly node?: string;
  readonly value?: string;
}

export function validateGraph(g: Graph): Problem[] {
  const problems: Problem[] = [];
  const add = (p: Problem): void => { problems.push(p); };

  // Node names unique (and non-empty: edits address nodes by name).
  const nodeNames = new Set<string>();
  for (const n of g.nodes) {
    if (n.name === '') add({ kind: 'empty-name', message: `a ${n.opType} node has no name; give every node a unique name` });
    else if (nodeNames.has(n.name)) add({ kind: 'duplicate-node-name', node: n.name, message: `node name '${n.name}' is used more than once` });
    nodeNames.add(n.name);
  }

  // Every value defined exactly once: graph input, initializer or one node output.
  const definedBy = new Map<string, string>();
  const define = (v: string, by: string): void => {
    const prev = definedBy.get(v);
    if (prev !== undefined) add({ kind: 'duplicate-value', value: v, message: `value '${v}' is defined by ${prev} and again by ${by}; rename one of them` });
    else definedBy.set(v, by);
  };
  for (const v of g.inputs) define(v.name, 'a graph input');
  for (const k of g.initializers.keys()) define(k, 'an initializer');
  for (const n of g.nodes) for (const o of n.outputs) if (o !== '') define(o, `node '${n.name}' (${n.opType})`);

  for (const n of g.nodes) {
    for (const v of n.inputs) {
      if (v !== '' && !definedBy.has(v)) add({ kind: 'undefined-value', node: n.name, value: v, message: `node '${n.name}' (${n.opType}) reads '${v}', which no input, initializer or node defines` });
    }
    if (n.outputs.some((o) => o !== '' && n.inputs.includes(o))) add({ kind: 'cycle', node: n.name, message: `node '${n.name}' (${n.opType}) reads its own output` });
  }

  // Cycles and order.
  try {
    topoOrder(g);
    const idx = indexGraph(g);
    for (let i = 0; i < g.nodes.length; i++) {
      const n = g.nodes[i]!;
      const late = n.inputs.find((v) => v !== '' && (idx.producerIndex.get(v) ?? -1) > i);
      if (late !== undefined) {
        add({ kind: 'not-topological', node: n.name, value: late, message: `node '${n.name}' reads '${late}' before it is produced; sort the graph (topoSort)` });
        break;
      }
    }
  } catch (e) {
    if (!(e instanceof TtaqError)) throw e;
    add({ kind: 'cycle', message: e.message });
  }

  const outs = new Set<string>();
  for (const o of g.outputs) {
    if (outs.has(o.name)) add({ kind: 'duplicate-output', value: o.name, message: `graph output '${o.name}' is listed twice` });
    outs.add(o.name);
    if (!definedBy.has(o.name)) add({ kind: 'missing-output', value: o.name, message: `graph output '${o.name}' is not produced by any node, input or initializer` });
  }

  for (const [k, t] of g.initializers) {
    if (t.data.length !== numel(t.dims)) add({ kind: 'bad-initializer', value: k, message: `initializer '${k}' has shape [${t.dims.join(', ')}] but ${t.data.length} elements` });
  }
  return problems;
}

/** Graph problems plus IR-version/opset support. */
export function validateModel(m: Model): Problem[] {
  const problems = validateGraph(m.graph);
  try {
    checkModelVersions(m);
  } catch (e) {
    if (!(e instanceof TtaqError)) throw e;
    problems.push({ kind: 'version', message: e.message });
  }
  return problems;
}

/** Throws ONNX_INVALID_GRAPH listing every problem (at most 10 shown). */
export function assertValidGraph(g: Graph, where = `graph '${g.name}'`): void {
  const problems = validateGraph(g);
  if (problems.length === 0) return;
  const shown = problems.slice(0, 10).map((p) => `  - ${p.message}`).join('\n');
  throw new TtaqError('ONNX_INVALID_GRAPH', `${where} is invalid (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n${shown}${problems.length > 10 ? `\n  ... and ${problems.length - 10} more` : ''}`, { problems });
}
