// The same updates as optimizers.ts expressed as one ONNX graph over all parameters, run by
// onnxruntime (multi-threaded, vectorised). Used where it beats the JavaScript loops (large
// parameter sets, see bench.ts); results are copied back into the caller's arrays.
import { TtaqError } from '../errors/index.ts';
import { GraphBuilder } from '../onnx/builder.ts';
import { f32 } from '../onnx/tensor.ts';
import type { Model, Tensor } from '../onnx/types.ts';
import { createSession, type Session, type SessionOptions } from '../runtime/index.ts';
import { paramData, type Adam, type GradArrays, type ParamArrays, type Sgd } from './optimizers.ts';

const t32 = (a: Float32Array): Tensor => ({ dtype: 'float32', dims: [a.length], data: a });

/** Graph of one update for parameters of the given sizes. Scalars are fed as inputs. */
function updateModel(kind: 'sgd' | 'adam', sizes: readonly number[]): Model {
  const b = new GraphBuilder('optim_update');
  const s = (name: string): string => b.input(name, 'float32', []);
  const one = b.constant(f32([], [1]), 'one');
  if (kind === 'sgd') {
    const [lr, mu, damp, wd] = [s('lr'), s('mu'), s('damp'), s('wd')];
    sizes.forEach((n, i) => {
      const p = b.input(`p${i}`, 'float32', [n]);
      const g = b.input(`g${i}`, 'float32', [n]);
      const m = b.input(`b${i}`, 'float32', [n]);
      const gi = b.op1('Add', [g, b.op1('Mul', [p, wd])]);
      const bi = b.op1('Add', [b.op1('Mul', [m, mu]), b.op1('Mul', [gi, damp])], {}, { outputNames: [`b${i}_out`] });
      b.op('Sub', [p, b.op1('Mul', [bi, lr])], {}, { outputNames: [`p${i}_out`] });
      b.output(`p${i}_out`, 'float32', [n]);
      b.output(`b${i}_out`, 'float32', [n]);
    });
  } else {
    const [b1, b2, stepSize, invC2, eps, shrink, l2] = ['b1', 'b2', 'step', 'inv_c2', 'eps', 'shrink', 'l2'].map(s);
    const omb1 = b.op1('Sub', [one, b1!]);
    const omb2 = b.op1('Sub', [one, b2!]);
    sizes.forEach((n, i) => {
      const p = b.input(`p${i}`, 'float32', [n]);
      const g = b.input(`g${i}`, 'float32', [n]);
      const m = b.input(`m${i}`, 'float32', [n]);
      const v = b.input(`v${i}`, 'float32', [n]);
      const gi = b.op1('Add', [g, b.op1('Mul', [p, l2!])]);
      const mi = b.op1('Add', [b.op1('Mul', [m, b1!]), b.op1('Mul', [gi, omb1])], {}, { outputNames: [`m${i}_out`] });
      const vi = b.op1('Add', [b.op1('Mul', [v, b2!]), b.op1('Mul', [b.op1('Mul', [gi, gi]), omb2])], {}, { outputNames: [`v${i}_out`] });
      const denom = b.op1('Add', [b.op1('Mul', [b.op1('Sqrt', [vi]), invC2!]), eps!]);
      const upd = b.op1('Div', [b.op1('Mul', [mi, stepSize!]), denom]);
      b.op('Sub', [b.op1('Mul', [p, shrink!]), upd], {}, { outputNames: [`p${i}_out`] });
      for (const k of ['p', 'm', 'v']) b.output(`${k}${i}_out`, 'float32', [n]);
    });
  }
  return { irVersion: 8, opsetImports: [{ domain: '', version: 17 }], producerName: 'ttaq', producerVersion: '0.1.0', metadata: {}, graph: b.build() };
}

/**
 * Runs an Sgd/Adam optimizer's update in onnxruntime. The optimizer object keeps the state and
 * hyper-parameters (so state(), load() and schedules work unchanged); this class only executes.
 */
export class GraphUpdater {
  private constructor(private readonly opt: Sgd | Adam, private readonly names: readonly string[], private readonly session: Session) {}

  /** `params` fixes the parameter set (names and sizes) the session is built for. */
  static async create(opt: Sgd | Adam, params: ParamArrays, session: SessionOptions = {}): Promise<GraphUpdater> {
    const names = [...params.keys()];
    const sizes = names.map((k) => paramData(params.get(k)!, k).length);
    const s = await createSession(updateModel(opt.kind, sizes), { source: 'optimizer update graph', ...session });
    return new GraphUpdater(opt, names, s);
  }

  async step(params: ParamArrays, grads: GradArrays, lr = this.opt.lr): Promise<void> {
    const o = this.opt;
    const feeds: Record<string, Tensor> = {};
    const sc = (v: number): Tensor => f32([], [v]);
    const slotOf = (name: string, key: string, n: number): Float32Array => o.buffer(name, key, n);
    const first = o.steps === 0;
    this.names.forEach((name, i) => {
      const pt = params.get(name);
      const g = grads.get(name);
      if (!pt || !g) throw new TtaqError('AUTODIFF_BAD_REQUEST', `GraphUpdater: parameter or gradient '${name}' missing; the updater was created for [${this.names.join(', ')}]`, { param: name });
      const p = paramData(pt, name);
      const gd = g instanceof Float32Array ? g : (g.data as Float32Array);
      feeds[`p${i}`] = t32(p);
      feeds[`g${i}`] = t32(gd);
      if (o.kind === 'sgd') {
        // First step: b = g (mu = 0, damp = 1 below).
        feeds[`b${i}`] = t32(slotOf(name, 'momentum', p.length));
      } else {
        feeds[`m${i}`] = t32(slotOf(name, 'm', p.length));
        feeds[`v${i}`] = t32(slotOf(name, 'v', p.length));
      }
    });
    if (o.kind === 'sgd') {
      if (o.nesterov) throw new TtaqError('CONFIG_INVALID', 'GraphUpdater does not run Nesterov SGD; use the JavaScript step');
      Object.assign(feeds, { lr: sc(lr), mu: sc(first ? 0 : o.momentum), damp: sc(first || o.momentum === 0 ? 1 : 1 - o.dampening), wd: sc(o.weightDecay) });
    } else {
      const [c1, c2] = o.corrections();
      Object.assign(feeds, {
        b1: sc(o.beta1), b2: sc(o.beta2), step: sc(lr / c1), inv_c2: sc(1 / Math.sqrt(c2)), eps: sc(o.eps),
        shrink: sc(o.decoupled ? 1 - lr * o.weightDecay : 1), l2: sc(o.decoupled ? 0 : o.weightDecay),
      });
    }
    const out = await this.session.run(feeds);
    this.names.forEach((name, i) => {
      const p = paramData(params.get(name)!, name);
      p.set(out[`p${i}_out`]!.data as Float32Array);
      if (o.kind === 'sgd') slotOf(name, 'momentum', p.length).set(out[`b${i}_out`]!.data as Float32Array);
      else {
        slotOf(name, 'm', p.length).set(out[`m${i}_out`]!.data as Float32Array);
        slotOf(name, 'v', p.length).set(out[`v${i}_out`]!.data as Float32Array);
      }
    });
    o.steps++;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
