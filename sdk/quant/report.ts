// The quantization report: per-layer SQNR of the quantized model against the FP model, model size by
// dtype, clean accuracy of both when labels are given, time per block.
import type { Model } from '../onnx/types.ts';
import { encodeModel } from '../onnx/codec.ts';
import { createSession } from '../runtime/index.ts';
import { weightBytesByDType } from './export.ts';
import type { BlockReport } from './recon.ts';
import { batching, forBatches, modelInput, realRows, setSize, withOutputs, type CalibSet } from './stats.ts';

export interface LayerSqnr {
  readonly node: string;
  readonly weightBits: number;
  readonly activationBits: number | null;
  /** SQNR (dB) of the layer's output in the quantized model vs the FP model, whole-network inputs. */
  readonly sqnrDb: number;
}

export interface QuantReport {
  readonly method: string;
  readonly weightBits: number;
  readonly activationBits: number;
  readonly layers: readonly LayerSqnr[];
  /** SQNR of the network output (logits). */
  readonly outputSqnrDb: number | null;
  readonly size: { readonly fp32Bytes: number; readonly quantizedBytes: number; readonly weightsByDType: Readonly<Record<string, number>> };
  readonly accuracy: { readonly fp32: number; readonly quantized: number; readonly images: number; readonly source: string } | null;
  /** The true-width and INT8-container exports on the same images (the accuracy set): they must agree. */
  readonly variants: { readonly images: number; readonly samePredictions: number; readonly maxLogitDiff: number } | null;
  readonly blocks: readonly BlockReport[];
  readonly seconds: Readonly<Record<string, number>>;
  readonly calibration: Readonly<Record<string, unknown>>;
  /** The reconstruction settings that produced the model (null for calibration-only methods), so a
   * report names its PEM/PCR weights without the file name having to. */
  readonly reconstruction: {
    readonly preset: string; readonly iterationsPerBlock: number; readonly pem: number; readonly pcr: number;
    /** The most data-parallel slices a step ran in (1 = one session; the times above depend on it);
     * each block's own count is in its report. */
    readonly slices: number;
  } | null;
  readonly pem?: Readonly<Record<string, { rho: number; coef: number }>>;
}

/** Σy² and Σ(y − ŷ)² of named values between two models fed the same images. */
export async function compareOutputs(fp: Model, q: Model, values: readonly string[], set: CalibSet, limit: number): Promise<Map<string, number>> {
  const n = Math.min(limit, setSize(set));
  const out = new Map<string, number>();
  if (n === 0 || values.length === 0) return out;
  const a = await createSession(withOutputs(fp, values), { source: 'FP model (report)' });
  const b = await createSession(withOutputs(q, values), { source: 'quantized model (report)' });
  const sig = new Float64Array(values.length);
  const err = new Float64Array(values.length);
  try {
    // a fixed batch (the quantized model keeps the FP model's) pads the last batch: its real rows count
    const run = batching(fp, 32);
    const input = modelInput(fp);
    const results: Record<string, import('../onnx/types.ts').Tensor>[] = [];
    await forBatches(a, input, set, run.batch, values, (r) => { results.push(r); }, n, run);
    let k = 0;
    await forBatches(b, modelInput(q), set, run.batch, values, (r, _start, m) => {
      const ra = results[k++]!;
      values.forEach((v, i) => {
        const x = realRows(ra[v]!, m);
        const y = realRows(r[v]!, m);
        let s = 0, e = 0;
        for (let j = 0; j < x.length; j++) { const d = x[j]! - y[j]!; s += x[j]! * x[j]!; e += d * d; }
        sig[i]! += s;
        err[i]! += e;
      });
    }, n, run);
  } finally {
    await a.release();
    await b.release();
  }
  values.forEach((v, i) => out.set(v, err[i]! === 0 ? Infinity : 10 * Math.log10(sig[i]! / err[i]!)));
  return out;
}

/** The logits of a model over the first `limit` images of a set, [n, classes] row-major. */
export async function allLogits(model: Model, set: CalibSet, limit = setSize(set)): Promise<{ readonly data: Float32Array; readonly n: number; readonly classes: number }> {
  const out = model.graph.outputs[0]!.name;
  const n = Math.min(limit, setSize(set));
  const s = await createSession(model, { source: 'accuracy' });
  let data = new Float32Array(0);
  let classes = 0;
  try {
    const run = batching(model, 256);
    await forBatches(s, modelInput(model), set, run.batch, [out], (r, start, k) => {
      const t = r[out]!;
      if (!classes) { classes = t.dims[1]!; data = new Float32Array(n * classes); }
      data.set(realRows(t, k), start * classes);
    }, n, run);
  } finally {
    await s.release();
  }
  return { data, n, classes };
}

const argmaxRow = (d: Float32Array, i: number, c: number): number => {
  let best = 0;
  for (let k = 1; k < c; k++) if (d[i * c + k]! > d[i * c + best]!) best = k;
  return best;
};

/** Top-1 accuracy from logits (per-sample argmax; a report, not a hot path). */
export function accuracyOf(l: { readonly data: Float32Array; readonly n: number; readonly classes: number }, labels: ArrayLike<number | bigint>): number {
  let right = 0;
  for (let i = 0; i < l.n; i++) if (argmaxRow(l.data, i, l.classes) === Number(labels[i])) right++;
  return l.n ? right / l.n : NaN;
}

/** How far two models' logits over the same images are apart: equal top-1 predictions and the largest logit difference. */
export function compareLogits(a: { readonly data: Float32Array; readonly n: number; readonly classes: number }, b: { readonly data: Float32Array; readonly n: number; readonly classes: number }): { readonly images: number; readonly samePredictions: number; readonly maxLogitDiff: number } {
  let same = 0;
  let max = 0;
  const n = Math.min(a.n, b.n);
  for (let i = 0; i < n; i++) if (argmaxRow(a.data, i, a.classes) === argmaxRow(b.data, i, b.classes)) same++;
  for (let j = 0; j < n * a.classes; j++) max = Math.max(max, Math.abs(a.data[j]! - b.data[j]!));
  return { images: n, samePredictions: same, maxLogitDiff: max };
}

/** Top-1 accuracy of a model on a labelled set. */
export async function accuracy(model: Model, set: CalibSet, limit = setSize(set)): Promise<number> {
  if (!set.labels) return NaN;
  return accuracyOf(await allLogits(model, set, limit), set.labels);
}

export const modelBytes = (m: Model): number => encodeModel(m).length;
export { weightBytesByDType };
