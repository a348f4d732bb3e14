// SGD with momentum, Nesterov and L2 weight decay, PyTorch semantics:
//   g' = g + wd * p;  v = mu * v + g' (v = g' on the first step);  p -= lr * (nesterov ? g' + mu * v : v)
// The update runs over each parameter's Float32Array; its state (one velocity buffer per
// parameter and the step count) is what checkpoints store.
import { TtaqError } from '../errors/index.ts';

export interface SgdOptions {
  readonly momentum: number;
  readonly weightDecay: number;
  readonly nesterov?: boolean;
  /** Parameters that get no weight decay. */
  readonly noDecay?: ReadonlySet<string>;
}

export class Sgd {
  private readonly velocity = new Map<string, Float32Array>();
  steps = 0;

  constructor(readonly o: SgdOptions) {
    if (o.momentum < 0 || o.momentum >= 1) throw new TtaqError('CONFIG_INVALID', `SGD momentum must be in [0, 1), got ${o.momentum}`);
    if (o.weightDecay < 0) throw new TtaqError('CONFIG_INVALID', `SGD weight decay must be >= 0, got ${o.weightDecay}`);
    if (o.nesterov && o.momentum === 0) throw new TtaqError('CONFIG_INVALID', 'Nesterov SGD needs a momentum > 0; set --momentum or drop --nesterov');
  }

  step(params: ReadonlyMap<string, Float32Array>, grads: ReadonlyMap<string, Float32Array>, lr: number): void {
    const { momentum: mu, nesterov } = this.o;
    const first = this.steps === 0;
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g || g.length !== p.length) throw new TtaqError('INTERNAL', `SGD: gradient of '${name}' missing or of the wrong size`);
      const wd = this.o.noDecay?.has(name) ? 0 : this.o.weightDecay;
      let v = this.velocity.get(name);
      if (!v) { v = new Float32Array(p.length); this.velocity.set(name, v); }
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]! + wd * p[i]!;
        const vi = mu === 0 ? gi : first ? gi : mu * v[i]! + gi;
        v[i] = vi;
        p[i] = p[i]! - lr * (nesterov ? gi + mu * vi : vi);
      }
    }
    this.steps++;
  }

  /** Velocity buffers (by parameter name) and the step count. */
  state(): { steps: number; buffers: Map<string, Float32Array> } {
    return { steps: this.steps, buffers: new Map(this.velocity) };
  }

  load(s: { steps: number; buffers: ReadonlyMap<string, Float32Array> }): void {
    this.steps = s.steps;
    this.velocity.clear();
    for (const [k, v] of s.buffers) this.velocity.set(k, Float32Array.from(v));
  }
}
