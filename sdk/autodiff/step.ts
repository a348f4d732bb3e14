// One gradient step's plumbing: holds the session of a gradient graph and runs it on the current
// parameters and a batch, returning loss, requested forward outputs and gradients. Feeds are IR
// tensors wrapping the caller's typed arrays (no copies); outputs wrap onnxruntime's buffers.
import { TtaqError } from '../errors/index.ts';
import type { Tensor } from '../onnx/types.ts';
import { convsToNchwc, createSession, DEFAULT_PROVIDERS, defaultAvailableProviders, NCHWC_DOMAIN, NCHWC_SESSION_EXTRA, nchwcBlockSize, resolveProviders, runsBatchNormTraining, type Session, type SessionOptions } from '../runtime/index.ts';
import type { BatchNormOptions } from './bn.ts';
import type { GradientGraph } from './graph.ts';
import { FeedBuffers, type BatchFeed } from './feeds.ts';
import { inferValueShapes } from './shapes.ts';

/** Parameters by wrt name: a Map or a plain object of tensors. */
export type ParamFeed = ReadonlyMap<string, Tensor> | Readonly<Record<string, Tensor>>;

export interface StepOptions {
  /** Session options (providers, threads). Default: sdk/runtime's defaults. */
  readonly session?: SessionOptions;
  /** 'nchwc' (default): where the session runs on the CPU, Convs whose weight is computed in the
   * graph run in onnxruntime's blocked layout (sdk/runtime/nchwc.ts); 'plain': the graph as built. */
  readonly convLayout?: ConvLayout;
}

export type ConvLayout = 'nchwc' | 'plain';

/**
 * `graph` as its session should run it: with `convLayout` 'nchwc' (the default) and a session on
 * the CPU, its Convs with computed weights moved to onnxruntime's NCHWc layout. Names of inputs,
 * outputs and gradients stay; values agree with the plain graph up to float summation order.
 */
export async function forExecution(graph: GradientGraph, opts: StepOptions = {}): Promise<GradientGraph> {
  if ((opts.convLayout ?? 'nchwc') !== 'nchwc') return graph;
  const g = graph.model.graph;
  if (!g.nodes.some((n) => n.opType === 'Conv' && (n.domain === '' || n.domain === 'ai.onnx') && !g.initializers.has(n.inputs[1] ?? ''))) return graph;
  const s = opts.session ?? {};
  const providers = resolveProviders(s.providers ?? DEFAULT_PROVIDERS, (s.availableProviders ?? defaultAvailableProviders)(), () => {}, false);
  if (providers[0] !== 'cpu') return graph;
  const block = await nchwcBlockSize();
  if (!block) return graph;
  // the weights' dims come from one run on zeros; a graph that cannot run so (data-dependent
  // shapes) keeps the plain layout rather than failing here: the layout is only an optimisation
  let shapes: Awaited<ReturnType<typeof inferValueShapes>>;
  try {
    shapes = await inferValueShapes(graph.model, { session: { ...s, providers: ['cpu'] } });
  } catch {
    return graph;
  }
  const r = convsToNchwc(graph.model, (v) => shapes.get(v)?.dims, block);
  return r.rewritten > 0 ? { ...graph, model: r.model } : graph;
}

/**
 * The BN mode of a gradient graph for sessions made with `s`: statistics as the model says, in one
 * training-mode BatchNormalization op where every provider the session may use runs it, else from
 * reductions (the 'fused' lowering): see runtime's runsBatchNormTraining.
 */
export function batchNormForSession(s: SessionOptions = {}): BatchNormOptions & { readonly stats: 'model'; readonly lowering: 'op' | 'fused' } {
  const op = runsBatchNormTraining(s.providers ?? DEFAULT_PROVIDERS, (s.availableProviders ?? defaultAvailableProviders)());
  return { stats: 'model', lowering: op ? 'op' : 'fused' };
}

/** The session options for `run` (forExecution's result): with its Convs in the NCHWc layout, the
 * config that keeps their weight reorders as written (NCHWC_SESSION_EXTRA); `s.extra` still wins. */
export function executionSession(run: GradientGraph, s: SessionOptions = {}): SessionOptions {
  if (!run.model.opsetImports.some((o) => o.domain === NCHWC_DOMAIN)) return s;
  return { ...s, extra: { ...NCHWC_SESSION_EXTRA, ...s.extra } };
}

export interface StepResult {
  readonly loss: number;
  /** Requested forward outputs. */
  readonly outputs: Record<string, Tensor>;
  /** wrt name -> gradient (same dtype and shape as the parameter). */
  readonly grads: Map<string, Tensor>;
}

export class GradientStep {
  /** Milliseconds spent inside Session.run and in total, summed over runs (for overhead figures). */
  readonly timing = { runs: 0, sessionMs: 0, totalMs: 0 };
  private readonly fetch: string[];
  private readonly buffers = new FeedBuffers();

  private constructor(readonly graph: GradientGraph, readonly session: Session) {
    this.fetch = [graph.loss, ...graph.outputs, ...graph.grads.values()];
  }

  static async create(graph: GradientGraph, opts: StepOptions = {}): Promise<GradientStep> {
    const run = await forExecution(graph, opts);
    const s = await createSession(run.model, { source: `gradient graph of '${graph.model.graph.name}'`, ...executionSession(run, opts.session) });
    return new GradientStep(graph, s);
  }

  /** Runs the graph: `params` must hold every wrt value, `batch` every other input (row feeds are
   * gathered into buffers reused by the next run). */
  async run(params: ParamFeed, batch: Readonly<Record<string, BatchFeed>>): Promise<StepResult> {
    const t0 = performance.now();
    const feeds: Record<string, Tensor> = {};
    for (const [name, f] of Object.entries(batch)) feeds[name] = this.buffers.feed(name, f);
    const get = params instanceof Map ? (k: string) => params.get(k) : (k: string) => (params as Record<string, Tensor>)[k];
    for (const w of this.graph.grads.keys()) {
      const t = get(w) ?? feeds[w];
      if (!t) {
        throw new TtaqError('AUTODIFF_BAD_REQUEST', `GradientStep.run: no value for '${w}' (differentiated value of '${this.graph.model.graph.name}'); pass it in params`, { wrt: w });
      }
      feeds[w] = t;
    }
    const t1 = performance.now();
    const out = await this.session.run(feeds, this.fetch);
    const t2 = performance.now();
    const lossT = out[this.graph.loss]!;
    const outputs: Record<string, Tensor> = {};
    for (const o of this.graph.outputs) outputs[o] = out[o]!;
    const grads = new Map<string, Tensor>();
    for (const [w, gname] of this.graph.grads) grads.set(w, out[gname]!);
    const res = { loss: Number(lossT.data[0]), outputs, grads };
    this.timing.runs++;
    this.timing.sessionMs += t2 - t1;
    this.timing.totalMs += performance.now() - t0;
    return res;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Deep copies of parameter tensors (e.g. GradientGraph.params) that an optimizer may update in place. */
export function copyParams(params: ReadonlyMap<string, Tensor>): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, t] of params) out.set(k, { dtype: t.dtype, dims: [...t.dims], data: t.data.slice() } as Tensor);
  return out;
}
