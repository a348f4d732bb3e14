// A model exported with a fixed batch size (PyTorch's torch.onnx.export without `dynamic_axes`
// declares its input as [1, C, H, W]) given a symbolic one. Reconstruction, PEM and the reports run
// batches of 16-256 images, so the quantizer needs it. A graph may also bake the batch size into a
// Reshape's constant shape (`x.view(1, -1)` exports as Reshape(x, [1, -1])): such a leading entry
// becomes 0 ("copy the input's dimension"). Whether the result is the same function is not
// assumed but checked: the freed model on a larger batch must give each image the logits the
// original gives it.
import { TtaqError } from '../errors/index.ts';
import { makeTensor } from '../onnx/tensor.ts';
import type { Dim, Model, Node, Tensor, ValueInfo } from '../onnx/types.ts';
import { createSession } from '../runtime/index.ts';

/** The symbolic name the freed batch dimension gets. */
export const FREED_BATCH = 'batch';

export type FreedBatch =
  | { readonly kind: 'symbolic'; readonly model: Model }
  | { readonly kind: 'freed'; readonly model: Model; readonly batch: number; readonly reshapes: readonly string[] }
  | { readonly kind: 'fixed'; readonly batch: number; readonly reason: string };

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
  }
  const valueInfo = new Map([...g.valueInfo].map(([k, v]) => [k, freeLeading(v, batch)]));
  return {
    model: {
      ...m,
      graph: {
        ...g,
        nodes: g.nodes.map((n) => replaced.get(n.name) ?? n),
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
  const per = dims.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n * per);
  let s = 12345;
  for (let i = 0; i < x.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    x[i] = (s >>> 8) / 16777216;
  }
  return x;
}

/**
 * `m` with a symbolic batch dimension. Already symbolic: returned as it is. Fixed: rewritten
 * (rewriteBatch), then checked in onnxruntime: the original runs `batch` probe images at a time,
 * the rewrite all 2·batch + 1 at once, and every image's outputs must agree. A graph that still
 * depends on the batch size (it fails, or mixes images) comes back as 'fixed' with the reason.
 */
export async function freeBatch(m: Model): Promise<FreedBatch> {
  const input = imageInput(m);
  const b = input?.shape?.[0];
  if (!input || typeof b !== 'number') return { kind: 'symbolic', model: m };
  const sample = input.shape!.slice(1);
  if (!sample.every((d: Dim) => typeof d === 'number' && d > 0)) return { kind: 'fixed', batch: b, reason: `its input '${input.name}' also has dynamic dimensions [${input.shape!.join(', ')}]` };
  const dims = sample as number[];
  const per = dims.reduce((x, y) => x * y, 1);
  const { model, reshapes } = rewriteBatch(m, b);
  const n = 2 * b + 1;
  const x = probeImages(n, dims);
  const outName = m.graph.outputs[0]!.name;
  try {
    const orig = await createSession(m, { source: 'the model (batch check)', logger: () => {} });
    const want: Float32Array[] = [];
    try {
      for (let i = 0; i + b <= n; i += b) want.push((await orig.run({ [input.name]: makeTensor('float32', [b, ...dims], x.slice(i * per, (i + b) * per)) }, [outName]))[outName]!.data as Float32Array);
    } finally {
      await orig.release();
    }
    const freed = await createSession(model, { source: 'the model with a free batch (batch check)', logger: () => {} });
    let got: Float32Array;
    try {
      got = (await freed.run({ [input.name]: makeTensor('float32', [n, ...dims], x) }, [outName]))[outName]!.data as Float32Array;
    } finally {
      await freed.release();
    }
    const ref = Float32Array.from(want.flatMap((a) => Array.from(a)));
    if (got.length !== n * (ref.length / (want.length * b))) return { kind: 'fixed', batch: b, reason: `on ${n} images its output has ${got.length} values, not ${n} images' worth` };
    for (let i = 0; i < ref.length; i++) {
      if (!(Math.abs(got[i]! - ref[i]!) <= 1e-4 * (1 + Math.abs(ref[i]!)))) return { kind: 'fixed', batch: b, reason: 'run on more images at once it gives an image other outputs than at its batch size (the graph mixes images or uses the batch size)' };
    }
  } catch (e) {
    return { kind: 'fixed', batch: b, reason: `it fails on another batch size (${(e as Error).message.split('\n')[0]!.slice(0, 200)})` };
  }
  return { kind: 'freed', model, batch: b, reshapes };
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
  throw new TtaqError('QUANT_BAD_MODEL', `model '${m.graph.name}' has a fixed batch size of ${r.batch}, and it cannot be freed: ${r.reason}. Export it with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={'<input>': {0: 'batch'}, '<output>': {0: 'batch'}})), or use --method mse, which calibrates without reconstruction`, { batch: r.batch });
}
