// Gradient checking against central finite differences. A case builds a small forward graph; the
// helper appends loss = sum(y * R) (R random, so every output element matters), differentiates
// it with buildGradientGraph, and compares each wrt gradient with (L(x + e) - L(x - e)) / 2e on a
// sample of elements, all through onnxruntime.
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { makeTensor, numel } from '../../sdk/onnx/tensor.ts';
import type { DType, Model, Tensor } from '../../sdk/onnx/types.ts';
import { createSession, type Session } from '../../sdk/runtime/index.ts';
import { buildGradientGraph, type GradientGraph, type RuleOptions } from '../../sdk/autodiff/index.ts';
import { Rng } from '../../sdk/nn/rng.ts';

export type FloatType = 'float32' | 'float64';

export function randTensor(rng: Rng, dtype: FloatType, dims: readonly number[], lo = -1, hi = 1): Tensor {
  const n = numel(dims);
  const data = dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = lo + (hi - lo) * rng.uniform();
  return makeTensor(dtype, dims, data as never) as Tensor;
}

/** Random values kept at least `gap` away from each point in `avoid` (kinks of Relu, Clip...). */
export function randAway(rng: Rng, dtype: FloatType, dims: readonly number[], avoid: readonly number[], gap = 0.05, lo = -1, hi = 1): Tensor {
  const t = randTensor(rng, dtype, dims, lo, hi);
  const d = t.data as Float64Array;
  for (let i = 0; i < d.length; i++) {
    for (const a of avoid) if (Math.abs(d[i]! - a) < gap) d[i] = a + (d[i]! >= a ? gap : -gap) * 1.5;
  }
  return t;
}

export function model(b: GraphBuilder, opset = 17): Model {
  return { irVersion: 8, opsetImports: [{ domain: '', version: opset }], producerName: 'test', producerVersion: '0', metadata: {}, graph: b.build() };
}

export interface CheckCase {
  readonly name: string;
  readonly dtype: FloatType;
  /** Builds the forward graph (inputs, initializers, nodes); returns the output to differentiate. */
  readonly build: (b: GraphBuilder) => string;
  /** Values for the graph inputs. */
  readonly feeds: Readonly<Record<string, Tensor>>;
  readonly wrt: readonly string[];
  readonly opset?: number;
  /** Finite-difference step (default 1e-4 for float64, 1e-2 for float32). */
  readonly eps?: number;
  /** Bound on max|fd - analytic| / (max|fd| + atol) per wrt value (default 1e-5 / 2e-2). */
  readonly rtol?: number;
  readonly atol?: number;
  /** Elements sampled per wrt value (default 16). */
  readonly samples?: number;
  /** Passed to buildGradientGraph (formulation choices of the rules). */
  readonly ruleOptions?: RuleOptions;
}

export interface CheckResult {
  readonly name: string;
  /** wrt -> relative error. */
  readonly errors: Map<string, number>;
  readonly worst: number;
  readonly rtol: number;
}

const seedFor = (s: string): number => [...s].reduce((h, ch) => (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0, 7);

/** Promotes initializers to graph inputs (so the finite-difference runs can perturb them). */
function promote(m: Model, names: readonly string[]): Model {
  const g = m.graph;
  const inits = new Map(g.initializers);
  const extra = [];
  for (const n of names) {
    const t = inits.get(n);
    if (!t) continue;
    inits.delete(n);
    extra.push({ name: n, dtype: t.dtype, shape: [...t.dims] });
  }
  return { ...m, graph: { ...g, initializers: inits, inputs: [...g.inputs, ...extra] } };
}

export async function gradCheck(c: CheckCase): Promise<CheckResult> {
  const rng = new Rng(seedFor(c.name));
  const b = new GraphBuilder('check');
  const y = c.build(b);
  const fwd = model(b, c.opset);
  // Shape of y from one run of the forward graph.
  const probe = await createSession({ ...fwd, graph: { ...fwd.graph, outputs: [{ name: y, dtype: c.dtype as DType }] } }, { providers: ['cpu'] });
  const yv = (await probe.run(c.feeds))[y]!;
  await probe.release();
  const R = randTensor(rng, c.dtype, yv.dims);
  const rName = b.constant(R, 'R');
  const rank = yv.dims.length;
  const prod = b.op1('Mul', [y, rName]);
  const loss = rank ? b.op1('ReduceSum', [prod, b.ints(Array.from({ length: rank }, (_, i) => i))], { keepdims: A.int(0) }, { outputNames: ['loss'] }) : b.op1('Identity', [prod], {}, { outputNames: ['loss'] });
  b.output(loss, c.dtype, []);
  const withLoss = model(b, c.opset);
  const gg: GradientGraph = await buildGradientGraph({ model: withLoss, loss, wrt: c.wrt, ...(c.ruleOptions ? { ruleOptions: c.ruleOptions } : {}) });
  const gs = await createSession(gg.model, { providers: ['cpu'] });
  const params: Record<string, Tensor> = {};
  for (const [k, t] of gg.params) params[k] = t;
  const feeds = { ...c.feeds, ...params };
  const res = await gs.run(feeds);
  await gs.release();

  const fd = promote(withLoss, c.wrt);
  const fs: Session = await createSession({ ...fd, graph: { ...fd.graph, outputs: [{ name: loss, dtype: c.dtype as DType, shape: [] }] } }, { providers: ['cpu'] });
  const eps = c.eps ?? (c.dtype === 'float64' ? 1e-4 : 1e-2);
  const rtol = c.rtol ?? (c.dtype === 'float64' ? 1e-5 : 2e-2);
  const atol = c.atol ?? 1e-6;
  const errors = new Map<string, number>();
  for (const w of c.wrt) {
    const base = feeds[w]!;
    const an = res[gg.grads.get(w)!]!;
    const n = base.data.length;
    const k = Math.min(n, c.samples ?? 16);
    const picks = k === n ? Array.from({ length: n }, (_, i) => i) : Array.from({ length: k }, () => Math.floor(rng.uniform() * n));
    let maxDiff = 0;
    let maxFd = 0;
    for (const i of picks) {
      const data = (base.data as Float64Array).slice();
      const x0 = data[i]!;
      const at = async (v: number): Promise<number> => {
        data[i] = v;
        const t = makeTensor(base.dtype, base.dims, data as never) as Tensor;
        const out = await fs.run({ ...feeds, [w]: t });
        return Number(out[loss]!.data[0]);
      };
      const num = ((await at(x0 + eps)) - (await at(x0 - eps))) / (2 * eps);
      const a = Number(an.data[i]);
      maxDiff = Math.max(maxDiff, Math.abs(num - a));
      maxFd = Math.max(maxFd, Math.abs(num));
    }
    errors.set(w, maxDiff / (maxFd + atol));
  }
  await fs.release();
  const worst = Math.max(...errors.values());
  return { name: c.name, errors, worst, rtol };
}
