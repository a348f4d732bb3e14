// Cost of an adaptation step relative to inference, at several batch sizes: median wall time of
// source inference (the plain model, fused BN), of the adapter's infer() (same normalisation as its
// step, no update) and of step(), measured interleaved so that load changes hit all three alike.
import { Adapter, type AdaptOptionsInput } from '../adapt/index.ts';
import { makeTensor } from '../onnx/tensor.ts';
import type { TensorOf } from '../onnx/types.ts';
import type { SessionOptions } from '../runtime/index.ts';
import { mergeOptions, parseMethodSpec, type EvalModel } from './run.ts';

export interface StepCost {
  readonly method: string;
  readonly batch: number;
  /** Median milliseconds. */
  readonly sourceMs: number;
  readonly inferMs: number;
  readonly stepMs: number;
  /** stepMs / inferMs */
  readonly stepOverInfer: number;
  /** stepMs / sourceMs */
  readonly stepOverSource: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** A deterministic batch of n inputs shaped as the manifest says, in an image-like value range. */
export function syntheticBatch(m: EvalModel, n: number): TensorOf<'float32'> {
  const dims = [n, ...m.manifest.input.shape.slice(1).map((d) => (d > 0 ? d : 1))];
  const size = dims.reduce((x, y) => x * y, 1);
  const data = new Float32Array(size);
  for (let i = 0; i < size; i++) data[i] = Math.sin(i * 0.37) * 1.5;
  return makeTensor('float32', dims, data);
}

export async function measureStepCost(m: EvalModel, methods: readonly string[], batches: readonly number[], o: { reps?: number; adapt?: AdaptOptionsInput; session?: SessionOptions } = {}): Promise<StepCost[]> {
  const src = await Adapter.create({ model: m.model, manifest: m.manifest, method: 'source', ...(o.session ? { session: o.session } : {}) });
  const out: StepCost[] = [];
  try {
    for (const method of methods) {
      const spec = parseMethodSpec(method);
      const options = mergeOptions({ collapseEntropy: 0, ...(o.adapt ?? {}) }, spec.options as Record<string, unknown>);
      const a = await Adapter.create({ model: m.model, manifest: m.manifest, method: spec.method, options, ...(o.session ? { session: o.session } : {}) });
      try {
        for (const n of batches) {
          const x = syntheticBatch(m, n);
          for (let w = 0; w < 2; w++) { await src.infer(x); await a.infer(x); await a.step(x); }
          const reps = o.reps ?? Math.max(5, Math.min(40, Math.round(400 / n)));
          const ts: number[] = [], ti: number[] = [], tt: number[] = [];
          for (let r = 0; r < reps; r++) {
            let t = performance.now(); await src.infer(x); ts.push(performance.now() - t);
            t = performance.now(); await a.infer(x); ti.push(performance.now() - t);
            t = performance.now(); await a.step(x); tt.push(performance.now() - t);
          }
          const sourceMs = median(ts), inferMs = median(ti), stepMs = median(tt);
          out.push({ method, batch: n, sourceMs, inferMs, stepMs, stepOverInfer: stepMs / inferMs, stepOverSource: stepMs / sourceMs });
        }
      } finally {
        await a.close();
      }
    }
  } finally {
    await src.close();
  }
  return out;
}

export function timingTable(rows: readonly StepCost[]): string {
  const lines = ['| method | batch | source infer ms | infer ms | step ms | step / infer | step / source |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: |'];
  for (const r of rows) lines.push(`| ${r.method} | ${r.batch} | ${r.sourceMs.toFixed(2)} | ${r.inferMs.toFixed(2)} | ${r.stepMs.toFixed(2)} | ${r.stepOverInfer.toFixed(2)} | ${r.stepOverSource.toFixed(2)} |`);
  return lines.join('\n') + '\n';
}
