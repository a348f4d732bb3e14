// Data-parallel gradient steps: one batch split into K slices, slice 0 run on this thread and the
// others by worker threads, each with its own onnxruntime session of the same gradient graph (built
// for one slice); losses, scalar outputs and gradients come back averaged. Why: onnxruntime-node
// runs `Session.run` on the calling thread, so two sessions in one thread never overlap, and on
// small graphs one session's intra-op threads do not help (a reconstruction step of ResNet-20's
// layer2.0 at batch 32: 17-19 s per 1,000 iterations with one thread and 19-22 with two; 11 at
// batch 16 on one; `node --import tsx sdk/quant/bench.ts --batch 16 --threads 1`). Two slices on
// two cores: QDrop 14.5 vs 16.3-17.1 s, TTAQ 23-26 vs 32-35 s per 1,000 iterations. Slice 0 stays
// on this thread because it would otherwise sit idle waiting, and waking a worker and waiting for
// the slower of two cost more than the messages.
//
// Averaging is exact for losses that are a mean over the batch plus batch-independent terms (a
// regulariser on the parameters): each slice's loss is the mean over its samples plus the same
// regulariser, so the mean over slices is the full-batch value. Ops that mix samples (batch
// statistics of BatchNormalization in training mode) see each slice only.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { TtaqError } from '../errors/index.ts';
import { encodeModel } from '../onnx/codec.ts';
import { makeTensor } from '../onnx/tensor.ts';
import type { DType, Tensor } from '../onnx/types.ts';
import type { SessionOptions } from '../runtime/index.ts';
import type { GradientGraph } from './graph.ts';
import { GradientStep, type ParamFeed, type StepResult } from './step.ts';

/** A tensor as it crosses the thread boundary (structured clone keeps typed arrays). */
export interface WireTensor { readonly name: string; readonly dtype: DType; readonly dims: readonly number[]; readonly data: Tensor['data'] }

export type ToStepWorker = { readonly type: 'run'; readonly id: number; readonly feeds: readonly WireTensor[] } | { readonly type: 'release' };
export type FromStepWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'result'; readonly id: number; readonly tensors: readonly WireTensor[] }
  | { readonly type: 'error'; readonly id: number; readonly code: string; readonly message: string };

export interface ParallelStepOptions {
  /** Slices of the batch (>= 2): slice 0 on this thread, one worker thread per other slice. */
  readonly workers: number;
  /** Forward outputs with a batch axis (per-sample logits): concatenated in slice order. Every
   * other output is averaged over the slices (scalars, per-channel batch statistics). */
  readonly concatOutputs?: readonly string[];
  /** Session options of every slice's session (the workers' get the plain-data part: their
   * provider events are not logged). */
  readonly session?: SessionOptions;
}

/** Slices for `requested` ('auto' = one per core, at most `max`): the largest count up to it that
 * divides `batch`, 1 when none does. */
export function chooseWorkers(requested: number | 'auto', batch: number, max = 2): number {
  const want = requested === 'auto' ? Math.min(max, availableParallelism()) : Math.max(1, Math.floor(requested));
  for (let k = Math.min(want, batch); k > 1; k--) if (batch % k === 0) return k;
  return 1;
}

/** onnxruntime threads for each of `slices` sessions sharing this machine's cores (at least 1). */
export function threadsPerSlice(slices: number): number {
  return Math.max(1, Math.floor(availableParallelism() / Math.max(1, slices)));
}

/** A wire tensor as onnxruntime-node takes it: it refuses views of shared memory ("Invalid
 * argument"), so those are copied into memory of this thread's own; other data passes as is. */
export function feedable(t: WireTensor): Tensor {
  const data = t.data.buffer instanceof SharedArrayBuffer ? t.data.slice() : t.data;
  return { dtype: t.dtype, dims: t.dims, data } as Tensor;
}

// The worker is TypeScript: it registers tsx's loader itself (a worker does not inherit the
// parent's module hooks), by absolute URL so it resolves from any working directory.
// Resolved on first use, so importing sdk/autodiff never depends on tsx being resolvable.
let boot: string | undefined;
function bootCode(): string {
  if (boot) return boot;
  let api: string;
  try {
    api = import.meta.resolve('tsx/esm/api');
  } catch (e) {
    throw new TtaqError('INTERNAL', `data-parallel steps need tsx to load their TypeScript worker (${(e as Error).message}); run 'npm ci', or use one slice (--workers 1)`, {}, { cause: e });
  }
  const worker = new URL('./parallel-worker.ts', import.meta.url).href;
  boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(worker)}); })`;
  return boot;
}

interface Pending { resolve: (t: readonly WireTensor[]) => void; reject: (e: Error) => void }

class StepWorker {
  private readonly pending = new Map<number, Pending>();
  private failure: Error | undefined;
  private constructor(private readonly w: Worker) {
    w.on('message', (m: FromStepWorker) => {
      if (m.type === 'ready') return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.type === 'result') p.resolve(m.tensors);
      else p.reject(new TtaqError(m.code as never, m.message));
    });
    const fail = (e: Error) => {
      this.failure = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    w.on('error', (e) => fail(new TtaqError('INTERNAL', `gradient worker failed: ${e.message}`, { cause: e })));
    w.on('exit', (code) => { if (code !== 0) fail(new TtaqError('INTERNAL', `gradient worker exited with code ${code}`)); });
  }

  static start(workerData: unknown): Promise<StepWorker> {
    const w = new Worker(bootCode(), { eval: true, workerData });
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(new TtaqError('INTERNAL', `gradient worker did not start: ${e.message}`, { cause: e }));
      w.once('error', onError);
      w.once('message', (m: FromStepWorker) => {
        w.off('error', onError);
        if (m.type === 'ready') resolve(new StepWorker(w));
        else { void w.terminate(); reject(new TtaqError((m.type === 'error' ? m.code : 'INTERNAL') as never, m.type === 'error' ? m.message : 'gradient worker: unexpected first message')); }
      });
    });
  }

  run(id: number, feeds: readonly WireTensor[]): Promise<readonly WireTensor[]> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.w.postMessage({ type: 'run', id, feeds } satisfies ToStepWorker);
    });
  }

  async stop(): Promise<void> {
    const exited = new Promise<void>((r) => this.w.once('exit', () => r()));
    this.w.postMessage({ type: 'release' } satisfies ToStepWorker);
    await Promise.race([exited, new Promise<void>((r) => setTimeout(r, 5000).unref())]);
    await this.w.terminate();
  }
}

/** Same contract as GradientStep.run, over K slices: batch inputs are split along axis 0. */
export class DataParallelStep {
  /** Same fields as GradientStep.timing; sessionMs is the time spent waiting for the slices. */
  readonly timing = { runs: 0, sessionMs: 0, totalMs: 0 };
  private nextId = 0;
  /** Declared first dimension of each graph input: a number, or null when symbolic. */
  private readonly batchDim: ReadonlyMap<string, number | null>;

  private constructor(readonly graph: GradientGraph, private readonly local: GradientStep, private readonly workers: readonly StepWorker[], private readonly concat: ReadonlySet<string>) {
    const dims = new Map<string, number | null>();
    for (const v of graph.model.graph.inputs) {
      if (!v.shape || v.shape.length === 0) continue;
      const d = v.shape[0];
      dims.set(v.name, typeof d === 'number' ? d : null);
    }
    this.batchDim = dims;
  }

  /** `graph` is built for one worker's slice: a batch of B feeds K slices of B/K. */
  static async create(graph: GradientGraph, opts: ParallelStepOptions): Promise<DataParallelStep> {
    if (!(opts.workers >= 2)) throw new TtaqError('AUTODIFF_BAD_REQUEST', `DataParallelStep needs at least 2 slices (got ${opts.workers}); use GradientStep for one`);
    const fetch = [graph.loss, ...graph.outputs, ...graph.grads.values()];
    const { logger: _logger, availableProviders: _probe, ...plain } = opts.session ?? {};
    const workerData = { model: encodeModel(graph.model), fetch, session: plain };
    // slice 0 runs on this thread: it would otherwise sit idle waiting, and a worker's wake-up and
    // the slowest of several workers cost more than the messages save
    const started = await Promise.allSettled(Array.from({ length: opts.workers - 1 }, () => StepWorker.start(workerData)));
    const ok = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const bad = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (bad) {
      await Promise.all(ok.map((w) => w.stop()));
      throw bad.reason as Error;
    }
    const local = await GradientStep.create(graph, { session: opts.session ?? {} });
    return new DataParallelStep(graph, local, ok, new Set(opts.concatOutputs ?? []));
  }

  get workerCount(): number { return this.workers.length + 1; }

  async run(params: ParamFeed, batch: Readonly<Record<string, Tensor>>): Promise<StepResult> {
    const t0 = performance.now();
    const K = this.workers.length + 1;
    const get = params instanceof Map ? (k: string) => params.get(k) : (k: string) => (params as Record<string, Tensor>)[k];
    const shared: WireTensor[] = [];
    for (const w of this.graph.grads.keys()) {
      const t = get(w) ?? batch[w];
      if (!t) throw new TtaqError('AUTODIFF_BAD_REQUEST', `DataParallelStep.run: no value for '${w}' (differentiated value of '${this.graph.model.graph.name}'); pass it in params`, { wrt: w });
      shared.push({ name: w, dtype: t.dtype, dims: t.dims, data: t.data });
    }
    const slices: WireTensor[][] = Array.from({ length: K }, () => []);
    // Split along axis 0: every batch input with a batch axis (declared symbolic, or declared as
    // one slice's rows and fed K times that); rank-0 and other fixed-size inputs go to every slice.
    for (const [name, t] of Object.entries(batch)) {
      if (this.graph.grads.has(name)) continue;
      const per = this.batchDim.get(name);
      const rows = t.dims.length > 0 ? t.dims[0]! : 0;
      const split = per === null ? rows > 0 : per !== undefined && rows === per * K;
      if (per === null && rows > 0 && rows % K !== 0) {
        throw new TtaqError('AUTODIFF_BAD_REQUEST', `DataParallelStep.run: input '${name}' has ${rows} rows, not a multiple of the ${K} slices; feed a batch divisible by ${K} or use fewer slices`);
      }
      if (per !== undefined && per !== null && rows !== per && rows !== per * K) {
        throw new TtaqError('AUTODIFF_BAD_REQUEST', `DataParallelStep.run: input '${name}' has ${rows} rows; the graph takes ${per} per slice, so feed ${per * K}`);
      }
      if (split) {
        const n = rows / K;
        const step = t.data.length / K;
        // Shared memory goes over as a view (no copy; the caller keeps it unchanged until run()
        // resolves). Otherwise slice() copies just this part: posting a subarray of an ordinary
        // buffer would clone the whole buffer.
        const shared = t.data.buffer instanceof SharedArrayBuffer;
        for (let k = 0; k < K; k++) {
          const part = shared ? t.data.subarray(k * step, (k + 1) * step) : t.data.slice(k * step, (k + 1) * step);
          slices[k]!.push({ name, dtype: t.dtype, dims: [n, ...t.dims.slice(1)], data: part });
        }
      } else {
        for (let k = 0; k < K; k++) slices[k]!.push({ name, dtype: t.dtype, dims: t.dims, data: t.data });
      }
    }
    const id = this.nextId++;
    const t1 = performance.now();
    const remote = Promise.all(this.workers.map((w, k) => w.run(id, [...shared, ...slices[k + 1]!])));
    // if this thread's slice throws, the workers' answer is never awaited: keep its rejection handled
    remote.catch(() => {});
    const mine = await this.local.run(params, Object.fromEntries(slices[0]!.map((t) => [t.name, feedable(t)])));
    const localWire: WireTensor[] = [
      { name: this.graph.loss, dtype: 'float32', dims: [], data: Float32Array.of(mine.loss) },
      ...this.graph.outputs.map((o) => ({ name: o, ...mine.outputs[o]! })),
      ...[...this.graph.grads].map(([w, g]) => ({ name: g, ...mine.grads.get(w)! })),
    ];
    const results = [localWire, ...(await remote)];
    this.timing.sessionMs += performance.now() - t1;
    const res = this.merge(results);
    this.timing.runs++;
    this.timing.totalMs += performance.now() - t0;
    return res;
  }

  /** Gradients and outputs averaged, the `concatOutputs` concatenated. */
  private merge(results: readonly (readonly WireTensor[])[]): StepResult {
    const K = results.length;
    const byName = results.map((r) => new Map(r.map((t) => [t.name, t])));
    const combine = (name: string, concat: boolean): Tensor => {
      const parts = byName.map((m) => m.get(name)!);
      const first = parts[0]!;
      if (concat && first.dims.length > 0) {
        const out = new Float32Array(parts.reduce((a, p) => a + p.data.length, 0));
        let o = 0;
        for (const p of parts) { out.set(p.data as Float32Array, o); o += p.data.length; }
        return makeTensor('float32', [parts.reduce((a, p) => a + p.dims[0]!, 0), ...first.dims.slice(1)], out);
      }
      const out = new Float32Array(first.data.length);
      for (const p of parts) { const d = p.data as Float32Array; for (let i = 0; i < out.length; i++) out[i]! += d[i]!; }
      for (let i = 0; i < out.length; i++) out[i]! /= K;
      return makeTensor('float32', first.dims, out);
    };
    const loss = Number(combine(this.graph.loss, false).data[0]);
    const outputs: Record<string, Tensor> = {};
    for (const o of this.graph.outputs) {
      const first = byName[0]!.get(o)!;
      if (first.dtype !== 'float32') { outputs[o] = { dtype: first.dtype, dims: first.dims, data: first.data } as Tensor; continue; }
      outputs[o] = combine(o, this.concat.has(o));
    }
    const grads = new Map<string, Tensor>();
    for (const [w, g] of this.graph.grads) grads.set(w, combine(g, false));
    return { loss, outputs, grads };
  }

  async release(): Promise<void> {
    await Promise.all([this.local.release(), ...this.workers.map((w) => w.stop())]);
  }
}
