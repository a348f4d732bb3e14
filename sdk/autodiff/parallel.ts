// Data-parallel gradient steps: one batch split into K slices, slice 0 run on this thread and the
// others by worker threads, each with its own onnxruntime session of the same gradient graph (built
// for one slice); losses, scalar outputs and gradients come back averaged. Why: onnxruntime-node
// runs `Session.run` on the calling thread, so two sessions in one thread never overlap, and on
// small graphs one session's intra-op threads do not help (a reconstruction step of ResNet-20's
// layer2.0 at batch 32: 15-20 s per 1,000 iterations with two threads, about as with one). Two
// slices on two cores: 9.5-11.3 s (`node bin/ttaq.js bench --only quant`, docs/BENCHMARKS.md).
// Slice 0 stays on this thread because it would otherwise sit idle waiting. Batch inputs given as
// row feeds (sdk/autodiff/feeds.ts) over shared memory are gathered by each slice itself.
//
// Averaging is exact for losses that are a mean over the batch plus batch-independent terms (a
// regulariser on the parameters): each slice's loss is the mean over its samples plus the same
// regulariser, so the mean over slices is the full-batch value. Ops that mix samples (batch
// statistics of BatchNormalization in training mode) see each slice only.
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { TtaqError } from '../errors/index.ts';
import { encodeModel } from '../onnx/codec.ts';
import { makeTensor } from '../onnx/tensor.ts';
import type { DType, Tensor } from '../onnx/types.ts';
import type { SessionOptions } from '../runtime/index.ts';
import type { GradientGraph } from './graph.ts';
import { executionSession, forExecution, GradientStep, type ConvLayout, type ParamFeed, type StepResult } from './step.ts';
import { FeedBuffers, isRowFeed, rowFeedDims, type BatchFeed, type RowFeed } from './feeds.ts';

/** A tensor as it crosses the thread boundary (structured clone keeps typed arrays). */
export interface WireTensor { readonly name: string; readonly dtype: DType; readonly dims: readonly number[]; readonly data: Tensor['data'] }

/** A row feed whose table is in shared memory, with the rows of one slice. */
export interface WireRows extends RowFeed { readonly name: string }
export type WireFeed = WireTensor | WireRows;

export type ToStepWorker =
  | { readonly type: 'run'; readonly id: number; readonly feeds: readonly WireFeed[] }
  /** Replace the session (a worker taken from the idle pool for another graph). */
  | { readonly type: 'load'; readonly id: number; readonly model: Uint8Array; readonly fetch: readonly string[]; readonly session: SessionOptions }
  /** Drop the session: the worker goes idle in the pool. */
  | { readonly type: 'unload' }
  | { readonly type: 'release' };
export type FromStepWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'loaded'; readonly id: number }
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
  /** As StepOptions.convLayout (default 'nchwc' on the CPU). */
  readonly convLayout?: ConvLayout;
}

/** Slices for `requested` ('auto' = one per core, at most `max`): the largest count up to it that
 * divides `batch`, 1 when none does. */
export function chooseWorkers(requested: number | 'auto', batch: number, max = 2): number {
  const want = requested === 'auto' ? Math.min(max, availableParallelism()) : Math.max(1, Math.floor(requested));
  for (let k = Math.min(want, batch); k > 1; k--) if (batch % k === 0) return k;
  return 1;
}

/**
 * Below this many values per sample (a 7x7x64 or 16x16x16 tensor, say) a step does too little work
 * per op to split: the slices' message passing, merge and second pass over the graph's nodes cost
 * more than they save, and one session with every core runs faster. Measured on ResNet-20's
 * reconstruction blocks, 2 cores, batch 32, 1,024 cached images (docs/BENCHMARKS.md, twelfth
 * session): blocks with 6,272 or 12,544 output values per sample ran faster in two slices, the
 * 3,136-value blocks of the last stage mostly faster in one session (the host's noise is as large
 * as the difference there).
 */
export const SLICE_MIN_SAMPLE_VALUES = 4096;

/** `chooseWorkers` for one step whose work scales with `sampleValues` values per sample: under
 * 'auto', a small step runs in one session. */
export function chooseWorkersFor(requested: number | 'auto', batch: number, sampleValues: number, max = 2): number {
  if (requested === 'auto' && sampleValues < SLICE_MIN_SAMPLE_VALUES) return 1;
  return chooseWorkers(requested, batch, max);
}

/** onnxruntime threads for each of `slices` sessions sharing this machine's cores (at least 1). */
export function threadsPerSlice(slices: number): number {
  return Math.max(1, Math.floor(availableParallelism() / Math.max(1, slices)));
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

/**
 * The hot-path channel to one worker. Jobs and results travel as structured clones over a
 * dedicated MessagePort that nobody listens on; each side reads it synchronously
 * (receiveMessageOnPort) after a futex wake-up through a shared counter (Atomics.wait / notify).
 * Why: a 'message' event needs the receiving thread's event loop to wake, which cost ~1 ms per
 * step here (a reconstruction step is ~10 ms); the futex hand-off costs microseconds.
 * ctrl[0] counts jobs posted, ctrl[1] results posted.
 */
export const CTRL_JOBS = 0;
export const CTRL_RESULTS = 1;
/** How long one blocking wait lasts before the waiting side looks at the worker's health. */
const WAIT_SLICE_MS = 20;

class StepWorker {
  private failure: Error | undefined;
  private constructor(private readonly w: Worker, private readonly port: MessagePort, private readonly ctrl: Int32Array) {
    const fail = (e: Error) => { this.failure ??= e; };
    w.on('error', (e) => fail(new TtaqError('INTERNAL', `gradient worker failed: ${e.message}`, { cause: e })));
    w.on('exit', (code) => fail(new TtaqError('INTERNAL', `gradient worker exited with code ${code}`)));
  }

  static start(workerData: Record<string, unknown>): Promise<StepWorker> {
    const { port1, port2 } = new MessageChannel();
    const ctrl = new Int32Array(new SharedArrayBuffer(8));
    const w = new Worker(bootCode(), { eval: true, workerData: { ...workerData, port: port2, ctrl: ctrl.buffer }, transferList: [port2] });
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => { port1.close(); reject(new TtaqError('INTERNAL', `gradient worker did not start: ${e.message}`, { cause: e })); };
      w.once('error', onError);
      w.once('message', (m: FromStepWorker) => {
        w.off('error', onError);
        if (m.type === 'ready') resolve(new StepWorker(w, port1, ctrl));
        else { port1.close(); void w.terminate(); reject(new TtaqError((m.type === 'error' ? m.code : 'INTERNAL') as never, m.type === 'error' ? m.message : 'gradient worker: unexpected first message')); }
      });
    });
  }

  post(m: ToStepWorker): void {
    if (this.failure) throw this.failure;
    this.port.postMessage(m);
    Atomics.add(this.ctrl, CTRL_JOBS, 1);
    Atomics.notify(this.ctrl, CTRL_JOBS);
  }

  /** The answer to job `id`. Blocks this thread in short waits (the caller has nothing else to do
   * meanwhile) and yields to the event loop between them, so a dead worker is noticed. */
  async result(id: number): Promise<readonly WireTensor[]> {
    for (;;) {
      const seen = Atomics.load(this.ctrl, CTRL_RESULTS);
      const got = receiveMessageOnPort(this.port);
      if (got) {
        const m = got.message as FromStepWorker;
        if (m.type === 'ready' || m.id !== id) continue; // an answer to an abandoned job
        if (m.type === 'result') return m.tensors;
        if (m.type === 'loaded') return [];
        throw new TtaqError(m.code as never, m.message);
      }
      if (this.failure) throw this.failure;
      if (Atomics.wait(this.ctrl, CTRL_RESULTS, seen, WAIT_SLICE_MS) === 'timed-out') await new Promise((r) => setImmediate(r));
    }
  }

  /** A new graph for this worker (taken from the idle pool): its session is replaced. */
  async load(model: Uint8Array, fetch: readonly string[], session: SessionOptions): Promise<void> {
    this.w.ref();
    const id = nextJobId++;
    this.post({ type: 'load', id, model, fetch, session });
    await this.result(id);
  }

  get healthy(): boolean { return !this.failure; }

  /** Back to the idle pool, its session dropped, or stopped when the pool is full or it failed. */
  async retire(): Promise<void> {
    if (this.failure || idleWorkers.length >= availableParallelism()) return this.stop();
    try { this.post({ type: 'unload' }); } catch { return this.stop(); }
    this.w.unref(); // an idle worker must not keep the process alive
    idleWorkers.push(this);
  }

  async stop(): Promise<void> {
    const exited = new Promise<void>((r) => this.w.once('exit', () => r()));
    try { this.post({ type: 'release' }); } catch { /* already gone */ }
    await Promise.race([exited, new Promise<void>((r) => setTimeout(r, 5000).unref())]);
    this.port.close();
    await this.w.terminate();
  }
}

type Settled<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/** A promise's outcome as a value: waiting for every slice must not stop at the first failure. */
const settle = <T>(p: Promise<T>): Promise<Settled<T>> => p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));

/** Part k of K (n rows each) of a batch feed. A row feed keeps its table and takes its rows; a
 * tensor in shared memory becomes a view (no copy; the caller keeps it unchanged until run()
 * resolves), any other one a copy of just this part: posting a subarray of an ordinary buffer
 * would clone the whole buffer. */
function sliceOf(f: BatchFeed, dims: readonly number[], k: number, n: number): BatchFeed {
  if (isRowFeed(f)) return { rowsOf: f.rowsOf, rowDims: f.rowDims, rows: f.rows.subarray(k * n, (k + 1) * n) };
  const step = f.data.length / (dims[0]! / n);
  const data = f.data.buffer instanceof SharedArrayBuffer ? f.data.subarray(k * step, (k + 1) * step) : f.data.slice(k * step, (k + 1) * step);
  return { dtype: f.dtype, dims: [n, ...dims.slice(1)], data } as Tensor;
}

/** A feed as it goes to a worker: a row feed over shared memory as its rows (the worker gathers
 * them), over an ordinary buffer gathered here. */
function toWire(name: string, f: BatchFeed): WireFeed {
  if (!isRowFeed(f)) return { name, dtype: f.dtype, dims: f.dims, data: f.data };
  if (f.rowsOf.buffer instanceof SharedArrayBuffer) return { name, rowsOf: f.rowsOf, rowDims: f.rowDims, rows: f.rows.slice() };
  const t = new FeedBuffers().feed(name, f);
  return { name, dtype: t.dtype, dims: t.dims, data: t.data };
}

/**
 * Workers of released steps, their sessions dropped. Starting a worker costs ~0.6 s here (it loads
 * tsx, onnxruntime and our modules), which block reconstruction paid once per block; a step now
 * takes its workers from this pool and only loads its graph into them.
 */
const idleWorkers: StepWorker[] = [];
/** Workers waiting in the idle pool (diagnostics and tests). */
export const idleStepWorkers = (): number => idleWorkers.length;
/** Job ids, unique in the process: a pooled worker may still answer a job of its previous step. */
let nextJobId = 0;

/** The elementwise mean of equally long arrays, in one pass (two slices, the common case, without
 * an inner loop): the merge runs on the critical path of every step, between the slices' runs. */
export function meanOf(parts: readonly Float32Array[]): Float32Array {
  const n = parts[0]!.length;
  const out = new Float32Array(n);
  if (parts.length === 2) {
    const a = parts[0]!;
    const b = parts[1]!;
    for (let i = 0; i < n; i++) out[i] = (a[i]! + b[i]!) * 0.5;
    return out;
  }
  const inv = 1 / parts.length;
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (const p of parts) acc += p[i]!;
    out[i] = acc * inv;
  }
  return out;
}

/** Same contract as GradientStep.run, over K slices: batch inputs are split along axis 0. */
export class DataParallelStep {
  /** Same fields as GradientStep.timing; sessionMs is the time spent waiting for the slices. */
  readonly timing = { runs: 0, sessionMs: 0, totalMs: 0 };
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
    // the layout rewrite (and its shape inference run) happens once, here, for every slice
    const run = await forExecution(graph, opts);
    const workerSession = executionSession(run, plain);
    const workerData = { model: encodeModel(run.model), fetch, session: workerSession };
    // slice 0 runs on this thread: it would otherwise sit idle waiting, and a worker's wake-up and
    // the slowest of several workers cost more than the messages save
    const pooled: StepWorker[] = [];
    for (const w of idleWorkers.splice(0, opts.workers - 1)) {
      if (w.healthy) pooled.push(w);
      else await w.stop(); // it died while idle
    }
    const started = await Promise.allSettled(Array.from({ length: opts.workers - 1 }, (_, k) => {
      const w = pooled[k];
      return w ? w.load(workerData.model, fetch, workerSession).then(() => w, async (e) => { await w.stop(); throw e; }) : StepWorker.start(workerData);
    }));
    const ok = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const bad = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (bad) {
      await Promise.all(ok.map((w) => w.stop()));
      throw bad.reason as Error;
    }
    const local = await GradientStep.create(run, { session: opts.session ?? {}, convLayout: 'plain' });
    return new DataParallelStep(graph, local, ok, new Set(opts.concatOutputs ?? []));
  }

  get workerCount(): number { return this.workers.length + 1; }

  async run(params: ParamFeed, batch: Readonly<Record<string, BatchFeed>>): Promise<StepResult> {
    const t0 = performance.now();
    const K = this.workers.length + 1;
    const get = params instanceof Map ? (k: string) => params.get(k) : (k: string) => (params as Record<string, Tensor>)[k];
    const shared: WireTensor[] = [];
    for (const w of this.graph.grads.keys()) {
      const f = batch[w];
      const t = get(w) ?? (f && !isRowFeed(f) ? f : undefined);
      if (!t) throw new TtaqError('AUTODIFF_BAD_REQUEST', `DataParallelStep.run: no value for '${w}' (differentiated value of '${this.graph.model.graph.name}'); pass it in params`, { wrt: w });
      shared.push({ name: w, dtype: t.dtype, dims: t.dims, data: t.data });
    }
    const mine: Record<string, BatchFeed> = {};
    const theirs: WireFeed[][] = Array.from({ length: K - 1 }, () => []);
    // Split along axis 0: every batch input with a batch axis (declared symbolic, or declared as
    // one slice's rows and fed K times that); rank-0 and other fixed-size inputs go to every slice.
    for (const [name, f] of Object.entries(batch)) {
      if (this.graph.grads.has(name)) continue;
      const dims = isRowFeed(f) ? rowFeedDims(f) : f.dims;
      const per = this.batchDim.get(name);
      const rows = dims.length > 0 ? dims[0]! : 0;
      const split = per === null ? rows > 0 : per !== undefined && rows === per * K;
      if (per === null && rows > 0 && rows % K !== 0) {
        throw new TtaqError('AUTODIFF_BAD_REQUEST', `DataParallelStep.run: input '${name}' has ${rows} rows, not a multiple of the ${K} slices; feed a batch divisible by ${K} or use fewer slices`);
      }
      if (per !== undefined && per !== null && rows !== per && rows !== per * K) {
        throw new TtaqError('AUTODIFF_BAD_REQUEST', `DataParallelStep.run: input '${name}' has ${rows} rows; the graph takes ${per} per slice, so feed ${per * K}`);
      }
      const n = split ? rows / K : rows;
      for (let k = 0; k < K; k++) {
        const part = split ? sliceOf(f, dims, k, n) : f;
        if (k === 0) mine[name] = part;
        else theirs[k - 1]!.push(toWire(name, part));
      }
    }
    const id = nextJobId++;
    const t1 = performance.now();
    this.workers.forEach((w, k) => w.post({ type: 'run', id, feeds: [...shared, ...theirs[k]!] }));
    // Every slice's job ends before a failure is thrown: releasing a worker's session while its run
    // is still going aborts the whole process instead of reporting the error.
    const settled = await settle(this.local.run(params, mine));
    const answers: Settled<readonly WireTensor[]>[] = [];
    for (const w of this.workers) answers.push(await settle(w.result(id)));
    if (!settled.ok) throw settled.error;
    const results: (readonly WireTensor[])[] = [[
      { name: this.graph.loss, dtype: 'float32', dims: [], data: Float32Array.of(settled.value.loss) },
      ...this.graph.outputs.map((o) => ({ name: o, ...settled.value.outputs[o]! })),
      ...[...this.graph.grads].map(([w, g]) => ({ name: g, ...settled.value.grads.get(w)! })),
    ]];
    for (const a of answers) {
      if (!a.ok) throw a.error;
      results.push(a.value);
    }
    this.timing.sessionMs += performance.now() - t1;
    const res = this.merge(results);
    this.timing.runs++;
    this.timing.totalMs += performance.now() - t0;
    return res;
  }

  /** Gradients and outputs averaged, the `concatOutputs` concatenated. */
  private merge(results: readonly (readonly WireTensor[])[]): StepResult {
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
      return makeTensor('float32', first.dims, meanOf(parts.map((p) => p.data as Float32Array)));
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

  /** Releases the sessions; the workers go back to the idle pool for the next step. */
  async release(): Promise<void> {
    await Promise.all([this.local.release(), ...this.workers.map((w) => w.retire())]);
  }
}
