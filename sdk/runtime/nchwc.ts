// onnxruntime's CPU provider runs a Conv fastest in its blocked "NCHWc" layout (channels in blocks
// of 8 or 16 innermost, direct convolution kernels instead of im2col + GEMM), but its optimizer
// only moves a Conv there when the weight is a constant initializer: it reorders the weight once,
// ahead of time. In a gradient graph the weight is a value computed every step (AdaRound's soft
// rounding, a parameter fed by the trainer, the flipped weight of an input gradient), so every one
// of those Convs ran as im2col + GEMM. This rewrite does by hand what the optimizer does, with the
// weight reordered inside the graph (Reshape, Transpose, Reshape over the weight's elements):
//
//   Y = Conv(X, W)   ->   Y = ReorderOutput(nchwc.Conv(ReorderInput(X), reorder(W), B))
//
// Measured in block reconstruction, alternating with the plain layout (`node --import tsx
// sdk/quant/bench.ts --threads 1 --workers 2 --block <b> --variant qdrop:layout=plain --variant
// qdrop --repeat 2`): docs/BENCHMARKS.md, tenth session.
//
// The ops are onnxruntime contrib ops of domain com.microsoft.nchwc. The block size depends on the
// CPU (8 with AVX2, 16 with AVX-512); it is probed once, together with a check that a rewritten
// Conv matches the plain one (nchwcBlockSize), and without both nothing is rewritten. Only Convs
// whose both channel counts are multiples of the block, with one group, 2-D and static weight
// shapes are rewritten; everything else stays as it was.
import { A } from '../onnx/builder.ts';
import { i64 } from '../onnx/tensor.ts';
import { nameAllocator } from '../onnx/edit.ts';
import type { Model, Node, Tensor } from '../onnx/types.ts';
import { createSession } from './session.ts';

export const NCHWC_DOMAIN = 'com.microsoft.nchwc';

/**
 * Session config for graphs this rewrite ran on. onnxruntime's float Transpose is fast only where
 * it swaps the last two axes (with any batch axes before them: ~0.5 ns per element here) or moves
 * whole blocks of 16 or more floats (~1 ns); any other permutation takes 4-9 ns per element. The
 * weight reorder below is therefore written as two such Transposes, but onnxruntime's transpose
 * optimizer (two instances, one generic and one for the CPU provider) fuses consecutive Transposes
 * across Reshapes back into one slow 6-D Transpose: a 64x64x3x3 weight's reorder took 150-300 µs
 * fused and 47 µs as two (onnxruntime's profiler, one thread). The optimizer changed nothing else in
 * our step graphs: ResNet-20's reconstruction steps (layer1.1, layer2.1, layer3.1) and its TENT step
 * ran equally fast with it off before this rewrite used it.
 */
export const NCHWC_SESSION_EXTRA: Readonly<Record<string, string>> = {
  'optimization.disable_specified_optimizers': 'TransposeOptimizer;TransposeOptimizer_CPUExecutionProvider',
};

let probed: Promise<number | undefined> | undefined;

const probeModel = (nodes: Node[], inputs: Model['graph']['inputs'], output: string): Model => ({
  irVersion: 8,
  opsetImports: [{ domain: '', version: 17 }, { domain: NCHWC_DOMAIN, version: 1 }],
  producerName: 'ttaq', producerVersion: '0', metadata: {},
  graph: { name: 'nchwc-probe', nodes, inputs, outputs: [{ name: output, dtype: 'float32' }], initializers: new Map(), valueInfo: new Map() },
});

async function runOnce(m: Model, feeds: Record<string, Tensor>, output: string): Promise<Tensor> {
  const s = await createSession(m, { providers: ['cpu'], source: 'the NCHWc probe', logger: () => {} });
  try { return (await s.run(feeds))[output]!; } finally { await s.release(); }
}

/**
 * The NCHWc channel block of this CPU (8 or 16 on x86), or undefined where onnxruntime lacks the
 * NCHWc kernels or they disagree with its plain Conv. ReorderInput's output on four channels (its
 * smallest input) gives the block; then one rewritten 3x3 Conv with a fed weight must match the
 * plain one, so that a build with only some of the ops (other CPUs) keeps the plain layout.
 */
export function nchwcBlockSize(): Promise<number | undefined> {
  probed ??= (async () => {
    try {
      const reorder = probeModel([{ name: 'probe', opType: 'ReorderInput', domain: NCHWC_DOMAIN, inputs: ['x'], outputs: ['y'], attrs: {} }],
        [{ name: 'x', dtype: 'float32', shape: [1, 4, 1, 1] }], 'y');
      const b = (await runOnce(reorder, { x: { dtype: 'float32', dims: [1, 4, 1, 1], data: new Float32Array(4) } }, 'y')).dims[1]!;
      if (!(b >= 4 && (b & (b - 1)) === 0)) return undefined;
      const plain = probeModel([{ name: 'conv', opType: 'Conv', domain: '', inputs: ['x', 'w'], outputs: ['y'], attrs: { pads: A.ints([1, 1, 1, 1]) } }],
        [{ name: 'x', dtype: 'float32', shape: [1, b, 4, 4] }, { name: 'w', dtype: 'float32', shape: [b, b, 3, 3] }], 'y');
      const moved = convsToNchwc(plain, (v) => (v === 'w' ? [b, b, 3, 3] : undefined), b);
      if (moved.rewritten !== 1) return undefined;
      const feeds: Record<string, Tensor> = {
        x: { dtype: 'float32', dims: [1, b, 4, 4], data: Float32Array.from({ length: b * 16 }, (_, i) => Math.sin(i)) },
        w: { dtype: 'float32', dims: [b, b, 3, 3], data: Float32Array.from({ length: b * b * 9 }, (_, i) => Math.cos(i * 0.7)) },
      };
      const [want, got] = [await runOnce(plain, feeds, 'y'), await runOnce(moved.model, feeds, 'y')];
      const a = want.data as Float32Array;
      const c = got.data as Float32Array;
      return a.length === c.length && a.every((v, i) => Math.abs(v - c[i]!) <= 1e-4 * (1 + Math.abs(v))) ? b : undefined;
    } catch {
      return undefined;
    }
  })();
  return probed;
}

/** Whether `n` is a Conv this rewrite takes, given its weight dims (4 of them: a 2-D Conv). */
function eligible(n: Node, w: readonly number[] | undefined, block: number, constants: ReadonlyMap<string, Tensor>): w is readonly number[] {
  if (n.opType !== 'Conv' || (n.domain !== '' && n.domain !== 'ai.onnx')) return false;
  if (!w || w.length !== 4 || constants.has(n.inputs[1]!)) return false; // onnxruntime does constant weights itself
  const group = n.attrs['group'];
  if (group && group.kind === 'int' && group.value !== 1) return false;
  const autoPad = n.attrs['auto_pad'];
  if (autoPad && autoPad.kind === 'string' && autoPad.value !== 'NOTSET') return false;
  const [o, i] = w as [number, number];
  return o % block === 0 && i % block === 0;
}

/**
 * `model` with every eligible Conv (see the file comment) in onnxruntime's NCHWc layout. `dimsOf`
 * gives static dims of values (the weights); `rewritten` counts the Convs moved.
 */
export function convsToNchwc(model: Model, dimsOf: (value: string) => readonly number[] | undefined, block: number): { model: Model; rewritten: number } {
  const g = model.graph;
  const fresh = nameAllocator(g);
  const initializers = new Map(g.initializers);
  const nodes: Node[] = [];
  const shapes = new Map<string, string>();
  const shapeConst = (dims: readonly number[]): string => {
    const key = dims.join(',');
    let name = shapes.get(key);
    if (!name) {
      name = fresh(`nchwc_shape_${dims.join('x')}`);
      initializers.set(name, i64([dims.length], dims));
      shapes.set(key, name);
    }
    return name;
  };
  let rewritten = 0;
  for (const n of g.nodes) {
    const w = dimsOf(n.inputs[1] ?? '');
    if (!eligible(n, w, block, g.initializers)) { nodes.push(n); continue; }
    const [o, i, kh, kw] = w as [number, number, number, number];
    const base = n.name || fresh('conv');
    const x = fresh(`${base}.nchwc_x`);
    const w3 = fresh(`${base}.nchwc_w3`);
    const wt3 = fresh(`${base}.nchwc_wt3`);
    const w5 = fresh(`${base}.nchwc_w5`);
    const wt = fresh(`${base}.nchwc_wt`);
    const wr = fresh(`${base}.nchwc_w`);
    const y = fresh(`${base}.nchwc_y`);
    const attrs = { ...n.attrs, kernel_shape: A.ints([kh, kw]) };
    nodes.push(
      { name: fresh(`${base}.nchwc_reorder_x`), opType: 'ReorderInput', domain: NCHWC_DOMAIN, inputs: [n.inputs[0]!], outputs: [x], attrs: {} },
      // OIHW -> [O/b, I/b, H, W, b_in, b_out]: the layout MLAS's NCHWc kernels read (OIHWBiBo), in two
      // fast Transposes (NCHWC_SESSION_EXTRA): b_out innermost per output block ([O/b, b_out, I*H*W]
      // -> [O/b, I*H*W, b_out]), then b_in past the kernel offsets in blocks of b_out floats
      { name: fresh(`${base}.nchwc_w_split`), opType: 'Reshape', domain: '', inputs: [n.inputs[1]!, shapeConst([o / block, block, i * kh * kw])], outputs: [w3], attrs: {} },
      { name: fresh(`${base}.nchwc_w_out_last`), opType: 'Transpose', domain: '', inputs: [w3], outputs: [wt3], attrs: { perm: A.ints([0, 2, 1]) } },
      { name: fresh(`${base}.nchwc_w_split_in`), opType: 'Reshape', domain: '', inputs: [wt3, shapeConst([o / block, i / block, block, kh * kw, block])], outputs: [w5], attrs: {} },
      { name: fresh(`${base}.nchwc_w_order`), opType: 'Transpose', domain: '', inputs: [w5], outputs: [wt], attrs: { perm: A.ints([0, 1, 3, 2, 4]) } },
      { name: fresh(`${base}.nchwc_w_merge`), opType: 'Reshape', domain: '', inputs: [wt, shapeConst([o, i, kh, kw])], outputs: [wr], attrs: {} },
      { name: fresh(`${base}.nchwc`), opType: 'Conv', domain: NCHWC_DOMAIN, inputs: [x, wr, ...(n.inputs[2] ? [n.inputs[2]] : [])], outputs: [y], attrs },
      { name: fresh(`${base}.nchwc_reorder_y`), opType: 'ReorderOutput', domain: NCHWC_DOMAIN, inputs: [y], outputs: [n.outputs[0]!], attrs: { channels: A.int(o) } },
    );
    rewritten++;
  }
  if (rewritten === 0) return { model, rewritten };
  const imports = model.opsetImports.some((s) => s.domain === NCHWC_DOMAIN) ? model.opsetImports : [...model.opsetImports, { domain: NCHWC_DOMAIN, version: 1 }];
  return { model: { ...model, opsetImports: imports, graph: { ...g, nodes, initializers } }, rewritten };
}
