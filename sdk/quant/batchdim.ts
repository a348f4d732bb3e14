// A model exported with a fixed batch size (PyTorch's torch.onnx.export without `dynamic_axes`
// declares its input as [1, C, H, W]) given a symbolic one. Reconstruction, PEM and the reports run
// batches of 16-256 images, so the quantizer needs it. A graph may also bake the batch size into a
// Reshape's constant shape (`x.view(1, -1)` exports as Reshape(x, [1, -1])): such a leading entry
// becomes 0 ("copy the input's dimension"). Whether the result is the same function is not
// assumed but checked: the freed model on a larger batch must give each image the outputs the
// original gives it. The quantized model keeps the symbolic batch (its manifest says -1): a
// fixed-batch engine (TensorRT) can still be built from it, the reverse is not true. A batch that
// cannot be freed still calibrates (no reconstruction) at its own size, a last partial batch padded
// with repeats of its images (stats.ts): exact when each image's outputs ignore the rest of its
// batch, which independentRows checks the same way, on probe images.
import { TtaqError } from '../errors/index.ts';
import { makeTensor } from '../onnx/tensor.ts';
import type { Dim, Model, Node, Tensor, ValueInfo } from '../onnx/types.ts';
import { Rng } from '../nn/index.ts';
import { createSession } from '../runtime/index.ts';

/** The symbolic name the freed batch dimension gets. */
export const FREED_BATCH = 'batch';

export type FreedBatch =
  | { readonly kind: 'symbolic'; readonly model: Model }
  | { readonly kind: 'freed'; readonly model: Model; readonly batch: number; readonly reshapes: readonly string[] }
  | { readonly kind: 'fixed'; readonly batch: number; readonly reason: string };

/** The model's outputs and the images' values per output (for the check). */
type Outputs = Record<string, ArrayLike<number | bigint>>;

const imageInput = (m: Model): ValueInfo | undefined => {
  const ins = m.graph.inputs.filter((i) => !m.graph.initializers.has(i.name));
  return ins.length === 1 ? ins[0] : undefined;
};

const freeLeading = (v: ValueInfo, batch: number): ValueInfo =>
  v.shape && v.shape[0] === batch ? { ...v, shape: [FREED_BATCH, ...v.shape.slice(1)] } : v;

/** A Reshape's constant shape with a leading `batch` replaced by 0 (copy), or undefined when it has none. */
function freedShape(t: Tensor, batch: number): Tensor | undefined {
  if (t.dtype !== 'int64' || t.dims.length !== 1 || t.data.length < 2 || t.data[0] !== BigInt(batch)) return undefined;
  const d = BigInt64Array.from(t.data);
  d[0] = 0n;
  return makeTensor('int64', t.dims, d);
}

/** The model with its batch dimension made symbolic: rewritten, not yet checked. */
export function rewriteBatch(m: Model, batch: number): { model: Model; reshapes: string[] } {
  const g = m.graph;
  const initializers = new Map(g.initializers);
  const constants = new Map(g.nodes.filter((n) => n.opType === 'Constant').map((n) => [n.outputs[0]!, n]));
  const replaced = new Map<string, Node>();
  const reshapes: string[] = [];
  const oldShapes = new Set<string>();
  for (const n of g.nodes) {
    if (n.opType !== 'Reshape' || n.domain !== '') continue;
    const allowZero = n.attrs.allowzero;
    if (allowZero && allowZero.kind === 'int' && allowZero.value !== 0) continue;
    const s = n.inputs[1]!;
    const init = initializers.get(s);
    const c = constants.get(s);
    const value = init ?? (c?.attrs.value?.kind === 'tensor' ? c.attrs.value.value : undefined);
    const freed = value && freedShape(value, batch);
    if (!freed) continue;
    // a shape value shared with another consumer keeps its own copy
    const name = `${s}:batch_free:${n.name}`;
    initializers.set(name, freed);
    replaced.set(n.name, { ...n, inputs: [n.inputs[0]!, name, ...n.inputs.slice(2)] });
    reshapes.push(n.name);
    oldShapes.add(s);
  }
  // The old shape values nothing reads any more go: an unused Constant would land in a
  // reconstruction block, which has no gradient rule for it (QUANT_NO_GRAD_RULE).
  const used = new Set([...g.nodes.flatMap((n) => replaced.get(n.name)?.inputs ?? n.inputs), ...g.outputs.map((o) => o.name)]);
  // (a sub-graph, carried as opaque bytes, may read outer values unseen: then nothing goes)
  const opaque = g.nodes.some((n) => Object.values(n.attrs).some((a) => a.kind === 'opaque'));
  const gone = (v: string): boolean => !opaque && oldShapes.has(v) && !used.has(v);
  const nodes = g.nodes.filter((n) => !(n.opType === 'Constant' && gone(n.outputs[0]!))).map((n) => replaced.get(n.name) ?? n);
  for (const v of oldShapes) if (gone(v) && !g.inputs.some((i) => i.name === v)) initializers.delete(v);
  const valueInfo = new Map([...g.valueInfo].map(([k, v]) => [k, freeLeading(v, batch)]));
  return {
    model: {
      ...m,
      graph: {
        ...g,
        nodes,
        inputs: g.inputs.map((v) => freeLeading(v, batch)),
        outputs: g.outputs.map((v) => freeLeading(v, batch)),
        initializers,
        valueInfo,
      },
    },
    reshapes,
  };
}

/** Deterministic test images in [0, 1) (the check needs values, not meaning). */
function probeImages(n: number, dims: readonly number[]): Float32Array {
  const rng = new Rng(12345);
  return Float32Array.from({ length: n * dims.reduce((a, b) => a * b, 1) }, () => rng.uniform());
}

/** Runs `m` on `x` (`k` images at a time), concatenating each output over the batches. */
async function runAll(m: Model, input: string, x: Float32Array, dims: readonly number[], k: number, n: number, source: string): Promise<Outputs> {
  const per = dims.reduce((a, b) => a * b, 1);
  const names = m.graph.outputs.map((o) => o.name);
  const parts: Record<string, ArrayLike<number | bigint>[]> = Object.fromEntries(names.map((o) => [o, []]));
  const s = await createSession(m, { source, logger: () => {} });
  try {
    for (let i = 0; i + k <= n; i += k) {
      const r = await s.run({ [input]: makeTensor('float32', [k, ...dims], x.slice(i * per, (i + k) * per)) }, names);
      for (const o of names) parts[o]!.push(r[o]!.data as ArrayLike<number | bigint>);
    }
  } finally {
    await s.release();
  }
  return Object.fromEntries(names.map((o) => [o, parts[o]!.flatMap((a) => Array.from(a))]));
}

/** Why `got` (from `n` images at once) is not `want` (from the first `m` of them), or undefined when it is. */
function mismatch(want: Outputs, got: Outputs, m: number, n: number): string | undefined {
  for (const [o, w] of Object.entries(want)) {
    const g = got[o]!;
    const per = w.length / m;
    if (g.length !== n * per) return `on ${n} images its output '${o}' has ${g.length} values, not ${n} images' worth (${n * per})`;
    for (let i = 0; i < w.length; i++) {
      const a = Number(w[i]!);
      if (!(Math.abs(Number(g[i]!) - a) <= 1e-4 * (1 + Math.abs(a)))) {
        return `run on ${n} images at once it gives image ${Math.floor(i / per)} other values of '${o}' than at its batch size (the graph mixes images or uses the batch size)`;
      }
    }
  }
  return undefined;
}

/**
 * `m` with a symbolic batch dimension. Already symbolic (or no single image input, which the
 * quantizer refuses elsewhere): returned as it is, the same object. Fixed: rewritten
 * (rewriteBatch), then checked in onnxruntime: the original runs `batch` probe images at a time,
 * the rewrite all 2·batch + 1 at once, and every output of every image must agree (relative 1e-4).
 * A rewrite that fails to load or run, or that gives other outputs, comes back as 'fixed' with the
 * reason. The original failing to run is not a batch question: its error (RUNTIME_*) is thrown.
 */
export async function freeBatch(m: Model): Promise<FreedBatch> {
  const input = imageInput(m);
  const b = input?.shape?.[0];
  if (!input || typeof b !== 'number') return { kind: 'symbolic', model: m };
  const sample = input.shape!.slice(1);
  if (!sample.every((d: Dim) => typeof d === 'number' && d > 0)) return { kind: 'fixed', batch: b, reason: `its input '${input.name}' also has dynamic dimensions [${input.shape!.join(', ')}]` };
  const dims = sample as number[];
  const { model, reshapes } = rewriteBatch(m, b);
  const n = 2 * b + 1;
  const x = probeImages(n, dims);
  const want = await runAll(m, input.name, x, dims, b, n, 'the model (batch check)');
  let got: Outputs;
  try {
    got = await runAll(model, input.name, x, dims, n, n, 'the model with a free batch (batch check)');
  } catch (e) {
    return { kind: 'fixed', batch: b, reason: `it fails on another batch size (${(e as Error).message.split('\n')[0]!.slice(0, 200)})` };
  }
  const why = mismatch(want, got, Math.floor(n / b) * b, n); // the original saw whole batches only
  return why ? { kind: 'fixed', batch: b, reason: why } : { kind: 'freed', model, batch: b, reshapes };
}

/**
 * Whether each image of a fixed batch gets outputs that do not depend on the other images of its
 * batch: then a last partial batch padded with repeats of its images (stats.ts, paddedSlice) gives
 * its real images exactly their outputs. Checked in onnxruntime on probe images, not assumed: a
 * batch with the first image among other images, and one with all but the last among others, must
 * give those images every output of the first batch (relative 1e-4). Reasons come back for a model
 * whose outputs have no per-image rows, or whose sample dimensions are not all known.
 */
export async function independentRows(m: Model): Promise<{ readonly independent: true } | { readonly independent: false; readonly reason: string }> {
  const input = imageInput(m);
  const b = input?.shape?.[0];
  if (!input || typeof b !== 'number' || b <= 1) return { independent: true };
  const sample = input.shape!.slice(1);
  if (!sample.every((d: Dim) => typeof d === 'number' && d > 0)) return { independent: false, reason: `its input '${input.name}' has dynamic dimensions [${input.shape!.join(', ')}], so no probe batch can be made` };
  const dims = sample as number[];
  const per = dims.reduce((a, c) => a * c, 1);
  const x = probeImages(2 * b, dims);
  // the first batch, then its first image among the next images, then all but its last image among them
  const batches = [x.slice(0, b * per), Float32Array.from([...x.subarray(0, per), ...x.subarray((b + 1) * per, 2 * b * per)]), Float32Array.from([...x.subarray(0, (b - 1) * per), ...x.subarray((2 * b - 1) * per, 2 * b * per)])];
  const outs: Outputs[] = [];
  for (const batch of b === 2 ? batches.slice(0, 2) : batches) outs.push(await runAll(m, input.name, batch, dims, b, b, 'the model (batch independence check)'));
  for (const [k, kept] of [[1, 1], [2, b - 1]] as const) {
    const got = outs[k];
    if (!got) continue;
    for (const [o, w] of Object.entries(outs[0]!)) {
      if (w.length % b !== 0) return { independent: false, reason: `its output '${o}' has ${w.length} values, no whole number per image of the batch of ${b}` };
      const n = (w.length / b) * kept;
      const g = got[o]!;
      for (let i = 0; i < n; i++) {
        const a = Number(w[i]!);
        if (!(Math.abs(Number(g[i]!) - a) <= 1e-4 * (1 + Math.abs(a)))) {
          return { independent: false, reason: `image ${Math.floor(i / (w.length / b))} gets other values of '${o}' when the other images of its batch change (the graph mixes the images of its batch)` };
        }
      }
    }
  }
  return { independent: true };
}

/**
 * freeBatch for the quantizer: the model with a symbolic batch when it can be had. When it cannot,
 * the model as it is if `needed` is false (calibration alone runs at the model's own batch size),
 * else a coded error with the way out.
 */
export async function withSymbolicBatch(m: Model, needed: boolean): Promise<Model> {
  const r = await freeBatch(m);
  if (r.kind !== 'fixed') return r.model;
  if (!needed) return m;
  const input = imageInput(m)!.name;
  const axes = [input, ...m.graph.outputs.map((o) => o.name)].map((v) => `'${v}': {0: 'batch'}`).join(', ');
  throw new TtaqError('QUANT_BAD_MODEL', `model '${m.graph.name}' has a fixed batch size of ${r.batch} (input '${input}'), and it cannot be freed: ${r.reason}. Re-export it with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={${axes}})), or use --method mse, which calibrates at the model's own batch size without reconstruction`, { batch: r.batch, reason: r.reason });
}
