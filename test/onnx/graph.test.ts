import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { bypassNode, exposeOutputs, foldConstants, insertNode, removeNode, removeUnused, renameValue, replaceNode, replaceUses, uniqueName } from '../../sdk/onnx/edit.ts';
import { extractModel, extractSubgraph } from '../../sdk/onnx/extract.ts';
import { ancestorNodes, consumers, descendantNodes, indexGraph, isTopologicallySorted, opHistogram, producers, topoOrder, topoSort } from '../../sdk/onnx/graph.ts';
import { f32, i64 } from '../../sdk/onnx/tensor.ts';
import type { Graph, Model, Tensor } from '../../sdk/onnx/types.ts';
import { assertValidGraph, validateGraph, validateModel } from '../../sdk/onnx/validate.ts';
import { getOpset, setOpset } from '../../sdk/onnx/versions.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { model, randn, rng, smallCnn } from './fixtures.ts';

const quiet = { logger: () => {} };
const asModel = (g: Graph): Model => ({ ...model(new GraphBuilder()), graph: g });

/** x -> Relu(a) -> Neg(b) -> Add(a, b) = c ; also Mul(x, w) = d ; outputs c, d */
function diamond(): Graph {
  const b = new GraphBuilder('diamond');
  b.input('x', 'float32', [3]);
  b.initializer('w', f32([3], [1, 2, 3]));
  b.op('Relu', ['x'], {}, { outputNames: ['a'], name: 'relu' });
  b.op('Neg', ['a'], {}, { outputNames: ['b'], name: 'neg' });
  b.op('Add', ['a', 'b'], {}, { outputNames: ['c'], name: 'add' });
  b.op('Mul', ['x', 'w'], {}, { outputNames: ['d'], name: 'mul' });
  b.output('c', 'float32', [3]);
  b.output('d', 'float32', [3]);
  return b.build();
}

async function run(m: Model, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const s = await createSession(m, quiet);
  try { return await s.run(feeds); } finally { await s.release(); }
}

test('producer/consumer maps and histograms', () => {
  const g = diamond();
  assert.equal(producers(g).get('b')!.name, 'neg');
  assert.deepEqual(consumers(g).get('a')!.map((n) => n.name), ['neg', 'add']);
  assert.deepEqual(consumers(g).get('x')!.map((n) => n.name), ['relu', 'mul']);
  assert.equal(indexGraph(g).producerIndex.get('c'), 2);
  assert.deepEqual([...opHistogram(smallCnn().graph)].sort(), [['Add', 1], ['AveragePool', 1], ['BatchNormalization', 1], ['Conv', 2], ['DequantizeLinear', 1], ['Flatten', 1], ['Gemm', 1], ['GlobalAveragePool', 1], ['MaxPool', 1], ['QuantizeLinear', 1], ['Relu', 1]]);
  assert.deepEqual([...ancestorNodes(g, ['c'])].sort(), ['add', 'neg', 'relu']);
  assert.deepEqual([...ancestorNodes(g, ['c'], new Set(['a']))].sort(), ['add', 'neg']);
  assert.deepEqual([...descendantNodes(g, ['a'])].sort(), ['add', 'neg']);
});

test('topological order is stable and restores shuffled graphs; cycles are named', () => {
  const g = diamond();
  assert.deepEqual(topoOrder(g).map((n) => n.name), ['relu', 'neg', 'add', 'mul']);
  const shuffled: Graph = { ...g, nodes: [g.nodes[2]!, g.nodes[3]!, g.nodes[1]!, g.nodes[0]!] };
  assert.equal(isTopologicallySorted(shuffled), false);
  const sorted = topoSort(shuffled);
  assert.equal(isTopologicallySorted(sorted), true);
  assert.deepEqual(sorted.nodes.map((n) => n.name), ['mul', 'relu', 'neg', 'add']);
  assert.equal(topoSort(g), g, 'an already sorted graph is returned as is');
  const cyc: Graph = { ...g, nodes: g.nodes.map((n) => (n.name === 'relu' ? { ...n, inputs: ['b'] } : n)) };
  assert.throws(() => topoOrder(cyc), (e: unknown) => isTtaqError(e) && e.code === 'ONNX_INVALID_GRAPH' && /cycle/.test(e.message) && /'relu'/.test(e.message) && /'neg'/.test(e.message));
});

test('validate lists every problem', () => {
  assert.deepEqual(validateGraph(diamond()), []);
  assert.deepEqual(validateGraph(smallCnn().graph), []);
  const g = diamond();
  const bad: Graph = {
    ...g,
    nodes: [...g.nodes, { name: 'add', opType: 'Sub', domain: '', inputs: ['ghost', 'x'], outputs: ['d'], attrs: {} }],
    outputs: [...g.outputs, { name: 'nowhere', dtype: 'float32' }],
    initializers: new Map([...g.initializers, ['bad_w', { dtype: 'float32', dims: [2, 2], data: new Float32Array(3) } as Tensor]]),
  };
  const kinds = validateGraph(bad).map((p) => p.kind).sort();
  assert.deepEqual(kinds, ['bad-initializer', 'duplicate-node-name', 'duplicate-value', 'missing-output', 'undefined-value']);
  const cyc: Graph = { ...g, nodes: g.nodes.map((n) => (n.name === 'relu' ? { ...n, inputs: ['b'] } : n)) };
  assert.ok(validateGraph(cyc).some((p) => p.kind === 'cycle'));
  const unsorted: Graph = { ...g, nodes: [g.nodes[1]!, g.nodes[0]!, g.nodes[2]!, g.nodes[3]!] };
  assert.deepEqual(validateGraph(unsorted).map((p) => p.kind), ['not-topological']);
  assert.throws(() => assertValidGraph(bad), (e: unknown) => isTtaqError(e) && e.code === 'ONNX_INVALID_GRAPH' && /5 problems/.test(e.message) && /ghost/.test(e.message));
  const m = model(new GraphBuilder(), 30);
  assert.deepEqual(validateModel(m).map((p) => p.kind), ['version']);
});

test('opset helpers', () => {
  const m = smallCnn();
  assert.equal(getOpset(m), 17);
  const m2 = setOpset({ ...m, opsetImports: [...m.opsetImports, { domain: 'com.microsoft', version: 1 }] }, 21);
  assert.equal(getOpset(m2), 21);
  assert.deepEqual(m2.opsetImports, [{ domain: '', version: 21 }, { domain: 'com.microsoft', version: 1 }]);
  assert.equal(getOpset(m), 17, 'input untouched');
});

test('edits: insert a QDQ pair with replaceUses, rename, bypass, replace, expose; results run in onnxruntime', async () => {
  const g0 = diamond();
  const x = f32([3], [1, -2, 3]);
  // Insert Q/DQ on 'a': readers of 'a' now read the dequantized value.
  const b = new GraphBuilder('tmp', 'qdq_');
  const s = b.constant(f32([], [0.5]), 'scale');
  let g: Graph = { ...g0, initializers: new Map([...g0.initializers, ...b.initializers]) };
  g = insertNode(g, { name: 'q', opType: 'QuantizeLinear', domain: '', inputs: ['a', s], outputs: ['a_q'], attrs: {} });
  g = insertNode(g, { name: 'dq', opType: 'DequantizeLinear', domain: '', inputs: ['a_q', s], outputs: ['a_dq'], attrs: {} });
  g = replaceUses(g, 'a', 'a_dq', { except: ['q'] });
  assert.deepEqual(g.nodes.map((n) => n.name), ['relu', 'q', 'dq', 'neg', 'add', 'mul']);
  assert.deepEqual(validateGraph(g), []);
  assert.deepEqual(g0.nodes.map((n) => n.name), ['relu', 'neg', 'add', 'mul'], 'original untouched');
  const out = await run(asModel(g), { x });
  assert.deepEqual(Array.from(out.c!.data as Float32Array), [0, 0, 0]);
  // Insertion position respects order even when asked to go first.
  const early = insertNode(g0, { name: 'late_reader', opType: 'Abs', domain: '', inputs: ['c'], outputs: ['e'], attrs: {} }, { before: 'relu' });
  assert.deepEqual(validateGraph(early), []);
  assert.ok(early.nodes.findIndex((n) => n.name === 'late_reader') > early.nodes.findIndex((n) => n.name === 'add'));
  // Rename a value everywhere.
  const r = renameValue(g0, 'a', 'activated');
  assert.deepEqual(r.nodes.find((n) => n.name === 'relu')!.outputs, ['activated']);
  assert.deepEqual(r.nodes.find((n) => n.name === 'add')!.inputs, ['activated', 'b']);
  assert.throws(() => renameValue(g0, 'a', 'b'), (e: unknown) => isTtaqError(e) && /already exists/.test(e.message));
  const rw = renameValue(g0, 'w', 'weight');
  assert.ok(rw.initializers.has('weight') && !rw.initializers.has('w'));
  // Bypass Neg: add reads a twice, c = 2a; bypass a graph-output producer keeps the output name.
  const byp = bypassNode(g0, 'neg');
  assert.deepEqual(validateGraph(byp), []);
  const o2 = await run(asModel(byp), { x });
  assert.deepEqual(Array.from(o2.c!.data as Float32Array), [2, 0, 6]);
  const byp2 = bypassNode(g0, 'add');
  assert.deepEqual(validateGraph(byp2), []);
  assert.deepEqual(byp2.outputs.map((o) => o.name), ['c', 'd']);
  const o3 = await run(asModel(byp2), { x });
  assert.deepEqual(Array.from(o3.c!.data as Float32Array), [1, 0, 3]);
  // Replace Neg by Abs; expose an intermediate as an output.
  const rep = exposeOutputs(replaceNode(g0, 'neg', { name: 'abs', opType: 'Abs', domain: '', inputs: ['a'], outputs: ['b'], attrs: {} }), ['b'], new Map([['b', { name: 'b', dtype: 'float32', shape: [3] }]]));
  const o4 = await run(asModel(rep), { x });
  assert.deepEqual(Array.from(o4.b!.data as Float32Array), [1, 0, 3]);
  assert.deepEqual(Array.from(o4.c!.data as Float32Array), [2, 0, 6]);
  assert.throws(() => exposeOutputs(g0, ['b']), (e: unknown) => isTtaqError(e) && e.code === 'ONNX_DYNAMIC_SHAPE');
  assert.throws(() => removeNode(g0, 'nope'), (e: unknown) => isTtaqError(e) && /no node named 'nope'/.test(e.message));
  // Dead code removal.
  const dead = removeUnused({ ...g0, outputs: [g0.outputs[1]!] });
  assert.deepEqual(dead.nodes.map((n) => n.name), ['mul']);
  assert.equal(uniqueName(g0, 'a'), 'a_1');
  assert.equal(uniqueName(g0, 'fresh'), 'fresh');
});

test('foldConstants: every numeric kind of Constant becomes an initializer of its name, the results unchanged', async () => {
  const b = new GraphBuilder('constants');
  b.input('x', 'float32', ['N', 2, 3]);
  const k = (name: string, attrs: Parameters<typeof b.op1>[2]) => b.op1('Constant', [], attrs, { name, outputNames: [`${name}.out`] });
  const shape = k('shape', { value: A.tensor(i64([2], [-1, 6])) });
  const scale = k('scale', { value_float: A.float(0.5) });
  const bias = k('bias', { value_floats: A.floats([1, 2, 3, 4, 5, 6]) });
  const axis = k('axis', { value_ints: A.ints([1]) });
  const power = k('power', { value_int: A.int(2) });
  const flat = b.op1('Reshape', ['x', shape], {}, { name: 'view' });
  const y = b.op1('Add', [b.op1('Mul', [flat, scale]), bias], {}, { name: 'affine' });
  b.op1('ReduceSum', [b.op1('Pow', [y, b.op1('Cast', [power], { to: A.int(1) })]), axis], { keepdims: A.int(0) }, { outputNames: ['y'] });
  // a Constant that is itself a graph output stays a node (an initializer is no output of a node)
  b.op1('Constant', [], { value: A.tensor(f32([1], [7])) }, { name: 'seven_node', outputNames: ['seven'] });
  b.output('y', 'float32', ['N']);
  b.output('seven', 'float32', [1]);
  const g = b.build();
  const folded = foldConstants(g);
  assert.deepEqual(folded.nodes.filter((n) => n.opType === 'Constant').map((n) => n.name), ['seven_node']);
  assert.deepEqual(validateGraph(folded), []);
  const dims = (v: string) => folded.initializers.get(v)?.dims;
  assert.deepEqual([dims('shape.out'), dims('scale.out'), dims('bias.out'), dims('axis.out'), dims('power.out')], [[2], [], [6], [1], []]);
  assert.equal(folded.initializers.get('power.out')!.dtype, 'int64');
  assert.equal(folded.initializers.get('scale.out')!.dtype, 'float32');
  assert.equal(g.initializers.size, 0, 'the input graph is not changed');
  const x = f32([2, 2, 3], [1, -2, 3, 0.5, 4, -1, 2, 2, -3, 1, 0, 6]);
  const [want, got] = [await run(asModel(g), { x }), await run(asModel(folded), { x })];
  assert.deepEqual(Array.from(got.y!.data as Float32Array), Array.from(want.y!.data as Float32Array));
  // by hand: image 0 is sum((x/2 + [1..6])^2)
  const img0 = [1, -2, 3, 0.5, 4, -1].reduce((s, v, i) => s + (v / 2 + i + 1) ** 2, 0);
  assert.ok(Math.abs((got.y!.data as Float32Array)[0]! - img0) < 1e-4);
  assert.equal(foldConstants(folded), folded, 'nothing left to fold: the same graph');
});

test('extract: the block between two cuts runs and matches the full model', async () => {
  const m = smallCnn(9);
  const g = m.graph;
  // Cut: from the first Relu's output to the residual Add's output.
  const relu = g.nodes.find((n) => n.opType === 'Relu')!;
  const add = g.nodes.find((n) => n.opType === 'Add')!;
  const infos = new Map([[relu.outputs[0]!, { name: relu.outputs[0]!, dtype: 'float32' as const, shape: [2, 4, 8, 8] }], [add.outputs[0]!, { name: add.outputs[0]!, dtype: 'float32' as const, shape: [2, 4, 8, 8] }]]);
  const block = extractModel(m, [relu.outputs[0]!], [add.outputs[0]!], { infos });
  assert.deepEqual(block.graph.nodes.map((n) => n.opType), ['Conv', 'Add']);
  assert.deepEqual([...block.graph.initializers.keys()].sort(), ['b2', 'w2']);
  assert.deepEqual(validateGraph(block.graph), []);
  // Full model with the cut values exposed, versus the block fed with the cut input.
  const full = { ...m, graph: exposeOutputs(g, [relu.outputs[0]!, add.outputs[0]!], infos) };
  const xin = randn(rng(3), [2, 3, 8, 8]);
  const fo = await run(full, { x: xin });
  const bo = await run(block, { [relu.outputs[0]!]: fo[relu.outputs[0]!]! });
  const a = fo[add.outputs[0]!]!.data as Float32Array, bb = bo[add.outputs[0]!]!.data as Float32Array;
  assert.equal(a.length, bb.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - bb[i]!) <= 1e-5 * (1 + Math.abs(a[i]!)), `element ${i}: ${a[i]} vs ${bb[i]}`);
  // An initializer can be a cut input (then a graph input), e.g. to differentiate by it.
  const wcut = extractSubgraph(g, [relu.outputs[0]!, 'w2'], [add.outputs[0]!], { infos });
  assert.deepEqual(wcut.inputs.map((v) => [v.name, v.shape]), [[relu.outputs[0]!, [2, 4, 8, 8]], ['w2', [4, 4, 3, 3]]]);
  assert.ok(!wcut.initializers.has('w2'));
  // Incomplete cut: the output depends on a graph input outside the cut.
  assert.throws(() => extractSubgraph(g, [], [add.outputs[0]!], { infos }), (e: unknown) => isTtaqError(e) && e.code === 'ONNX_INVALID_GRAPH' && /graph input 'x'/.test(e.message));
  assert.throws(() => extractSubgraph(g, [relu.outputs[0]!], [add.outputs[0]!]), (e: unknown) => isTtaqError(e) && e.code === 'ONNX_DYNAMIC_SHAPE');
});
