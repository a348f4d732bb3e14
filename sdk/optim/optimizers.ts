// SGD (momentum, Nesterov, weight decay) and Adam/AdamW over Float32Array parameters, updated in
// place. State is plain typed arrays keyed by parameter name (see state.ts for JSON / bytes).
// The semantics follow the usual definitions (PyTorch's torch.optim.SGD / Adam / AdamW):
//   SGD:  g = grad + wd*p;  b = mu*b + (1 - dampening)*g (b = g on the first step);
//         d = nesterov ? g + mu*b : b;  p -= lr*d
//   Adam: g = grad + wd*p (Adam) or p *= 1 - lr*wd (AdamW, decoupled);
//         m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
//         p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
import { TtaqError } from '../errors/index.ts';
import type { Tensor } from '../onnx/types.ts';

/** Parameters by name (raw arrays or float32 IR tensors); the arrays are updated in place. */
export type ParamArrays = ReadonlyMap<string, Float32Array | Tensor>;
/** Gradients by name: raw arrays or float32 IR tensors (as GradientStep returns them). */
export type GradArrays = ReadonlyMap<string, Float32Array | Tensor>;

export interface SgdOptions {
  readonly lr: number;
  /** Default 0. */
  readonly momentum?: number;
  /** Default 0. */
  readonly dampening?: number;
  /** Default false (needs momentum > 0 and dampening 0). */
  readonly nesterov?: boolean;
  /** L2 penalty added to the gradient. Default 0. */
  readonly weightDecay?: number;
}

export interface AdamOptions {
  readonly lr: number;
  /** Default 0.9. */
  readonly beta1?: number;
  /** Default 0.999. */
  readonly beta2?: number;
  /** Default 1e-8. */
  readonly eps?: number;
  /** Default 0 (Adam) / 0.01 (AdamW). */
  readonly weightDecay?: number;
  /** Decoupled weight decay (AdamW). Default false. */
  readonly decoupled?: boolean;
}

export type OptimizerConfig = ({ readonly kind: 'sgd' } & SgdOptions) | ({ readonly kind: 'adam' | 'adamw' } & AdamOptions);

/** Serialisable optimizer state: hyper-parameters, step count and per-parameter buffers. */
export interface OptimizerState {
  readonly kind: 'sgd' | 'adam';
  readonly steps: number;
  readonly hyper: Readonly<Record<string, number | boolean>>;
  /** parameter name -> slot name ('momentum', 'm', 'v') -> buffer. */
  readonly slots: Readonly<Record<string, Readonly<Record<string, Float32Array>>>>;
}

export interface Optimizer {
  readonly kind: 'sgd' | 'adam';
  /** Updates applied so far. */
  readonly steps: number;
  /** Learning rate used when `step` is not given one (set it from a schedule). */
  lr: number;
  /** Applies one update to every parameter that has a gradient. */
  step(params: ParamArrays, grads: GradArrays, lr?: number): void;
  state(): OptimizerState;
  /** Restores a state written by `state()` (buffers are copied). */
  load(state: OptimizerState): void;
  /** Drops buffers and the step count (e.g. on a model reset). */
  reset(): void;
}

/** The Float32Array of a parameter, which the update mutates. */
export const paramData = (p: Float32Array | Tensor, name: string): Float32Array => {
  const d = p instanceof Float32Array ? p : p.data;
  if (!(d instanceof Float32Array)) {
    throw new TtaqError('AUTODIFF_BAD_REQUEST', `optimizer: parameter '${name}' is ${(p as Tensor).dtype}; only float32 parameters are updated`, { param: name });
  }
  return d;
};

const gradData = (g: Float32Array | Tensor | undefined, name: string, n: number): Float32Array | undefined => {
  if (g === undefined) return undefined;
  const d = g instanceof Float32Array ? g : g.data;
  if (!(d instanceof Float32Array)) {
    throw new TtaqError('AUTODIFF_BAD_REQUEST', `optimizer: gradient of '${name}' is ${g instanceof Float32Array ? 'float32' : g.dtype}; only float32 parameters are updated`, { param: name });
  }
  if (d.length !== n) {
    throw new TtaqError('AUTODIFF_BAD_REQUEST', `optimizer: gradient of '${name}' has ${d.length} elements, the parameter ${n}; pass the gradient of the same parameter`, { param: name });
  }
  return d;
};

function checkHyper(name: string, v: number, lo: number, hi: number, loOpen = false): number {
  if (!Number.isFinite(v) || v < lo || v > hi || (loOpen && v === lo)) {
    throw new TtaqError('CONFIG_INVALID', `optimizer option ${name} = ${v} is out of range ${loOpen ? '(' : '['}${lo}, ${hi}]`, { option: name, value: v });
  }
  return v;
}

abstract class Base implements Optimizer {
  abstract readonly kind: 'sgd' | 'adam';
  steps = 0;
  protected slots = new Map<string, Record<string, Float32Array>>();
  constructor(public lr: number) {
    checkHyper('lr', lr, 0, Number.MAX_VALUE);
  }
  /** The named buffer of a parameter, created zero-filled on first use. */
  buffer(name: string, key: string, n: number): Float32Array {
    let s = this.slots.get(name);
    if (!s) { s = {}; this.slots.set(name, s); }
    let b = s[key];
    if (!b) { b = new Float32Array(n); s[key] = b; }
    if (b.length !== n) {
      throw new TtaqError('STATE_MISMATCH', `optimizer buffer '${key}' of '${name}' has ${b.length} elements, the parameter ${n}; the state belongs to another model (reset() or load a matching state)`, { param: name });
    }
    return b;
  }
  protected abstract hyper(): Record<string, number | boolean>;
  protected abstract setHyper(h: Readonly<Record<string, number | boolean>>): void;
  abstract step(params: ParamArrays, grads: GradArrays, lr?: number): void;
  state(): OptimizerState {
    const slots: Record<string, Record<string, Float32Array>> = {};
    for (const [k, s] of this.slots) slots[k] = { ...s };
    return { kind: this.kind, steps: this.steps, hyper: this.hyper(), slots };
  }
  load(state: OptimizerState): void {
    if (state.kind !== this.kind) {
      throw new TtaqError('STATE_MISMATCH', `optimizer state is for '${state.kind}', this optimizer is '${this.kind}'; create the matching optimizer (createOptimizer(stateConfig(state)))`, { kind: state.kind });
    }
    this.setHyper(state.hyper);
    this.steps = state.steps;
    this.slots = new Map(Object.entries(state.slots).map(([k, s]) => [k, Object.fromEntries(Object.entries(s).map(([n, b]) => [n, Float32Array.from(b)]))]));
  }
  reset(): void {
    this.steps = 0;
    this.slots.clear();
  }
}

export class Sgd extends Base {
  readonly kind = 'sgd' as const;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  weightDecay: number;

  constructor(o: SgdOptions) {
    super(o.lr);
    this.momentum = checkHyper('momentum', o.momentum ?? 0, 0, 1);
    this.dampening = checkHyper('dampening', o.dampening ?? 0, 0, 1);
    this.nesterov = o.nesterov ?? false;
    this.weightDecay = checkHyper('weightDecay', o.weightDecay ?? 0, 0, Number.MAX_VALUE);
    if (this.nesterov && (this.momentum === 0 || this.dampening !== 0)) {
      throw new TtaqError('CONFIG_INVALID', 'Nesterov SGD needs momentum > 0 and dampening 0', { momentum: this.momentum, dampening: this.dampening });
    }
  }

  protected hyper(): Record<string, number | boolean> {
    return { lr: this.lr, momentum: this.momentum, dampening: this.dampening, nesterov: this.nesterov, weightDecay: this.weightDecay };
  }
  protected setHyper(h: Readonly<Record<string, number | boolean>>): void {
    this.lr = Number(h['lr'] ?? this.lr);
    this.momentum = Number(h['momentum'] ?? this.momentum);
    this.dampening = Number(h['dampening'] ?? this.dampening);
    this.nesterov = Boolean(h['nesterov'] ?? this.nesterov);
    this.weightDecay = Number(h['weightDecay'] ?? this.weightDecay);
  }

  step(params: ParamArrays, grads: GradArrays, lr = this.lr): void {
    const mu = this.momentum;
    const damp = 1 - this.dampening;
    const wd = this.weightDecay;
    const first = this.steps === 0;
    for (const [name, pt] of params) {
      const p = paramData(pt, name);
      const g = gradData(grads.get(name), name, p.length);
      if (!g) continue;
      const n = p.length;
      if (mu === 0) {
        for (let i = 0; i < n; i++) p[i] = p[i]! - lr * (g[i]! + wd * p[i]!);
        continue;
      }
      const fresh = first || !this.slots.get(name)?.['momentum'];
      const b = this.buffer(name, 'momentum', n);
      if (this.nesterov) {
        for (let i = 0; i < n; i++) {
          const gi = g[i]! + wd * p[i]!;
          const bi = fresh ? gi : mu * b[i]! + damp * gi;
          b[i] = bi;
          p[i] = p[i]! - lr * (gi + mu * bi);
        }
      } else {
        for (let i = 0; i < n; i++) {
          const gi = g[i]! + wd * p[i]!;
          const bi = fresh ? gi : mu * b[i]! + damp * gi;
          b[i] = bi;
          p[i] = p[i]! - lr * bi;
        }
      }
    }
    this.steps++;
  }
}

export class Adam extends Base {
  readonly kind = 'adam' as const;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  decoupled: boolean;

  constructor(o: AdamOptions) {
    super(o.lr);
    this.beta1 = checkHyper('beta1', o.beta1 ?? 0.9, 0, 1);
    this.beta2 = checkHyper('beta2', o.beta2 ?? 0.999, 0, 1);
    if (this.beta1 === 1 || this.beta2 === 1) throw new TtaqError('CONFIG_INVALID', 'Adam betas must be below 1', { beta1: this.beta1, beta2: this.beta2 });
    this.eps = checkHyper('eps', o.eps ?? 1e-8, 0, 1, true);
    this.decoupled = o.decoupled ?? false;
    this.weightDecay = checkHyper('weightDecay', o.weightDecay ?? (this.decoupled ? 0.01 : 0), 0, Number.MAX_VALUE);
  }

  protected hyper(): Record<string, number | boolean> {
    return { lr: this.lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay, decoupled: this.decoupled };
  }
  protected setHyper(h: Readonly<Record<string, number | boolean>>): void {
    this.lr = Number(h['lr'] ?? this.lr);
    this.beta1 = Number(h['beta1'] ?? this.beta1);
    this.beta2 = Number(h['beta2'] ?? this.beta2);
    this.eps = Number(h['eps'] ?? this.eps);
    this.weightDecay = Number(h['weightDecay'] ?? this.weightDecay);
    this.decoupled = Boolean(h['decoupled'] ?? this.decoupled);
  }

  /** Bias-correction factors for the next step: [1 - b1^t, 1 - b2^t]. */
  corrections(t = this.steps + 1): [number, number] {
    return [1 - this.beta1 ** t, 1 - this.beta2 ** t];
  }

  step(params: ParamArrays, grads: GradArrays, lr = this.lr): void {
    const { beta1: b1, beta2: b2, eps, weightDecay: wd, decoupled } = this;
    const [c1, c2] = this.corrections();
    const stepSize = lr / c1;
    const invSqrtC2 = 1 / Math.sqrt(c2);
    const shrink = decoupled ? 1 - lr * wd : 1;
    const l2 = decoupled ? 0 : wd;
    for (const [name, pt] of params) {
      const p = paramData(pt, name);
      const g = gradData(grads.get(name), name, p.length);
      if (!g) continue;
      const n = p.length;
      const m = this.buffer(name, 'm', n);
      const v = this.buffer(name, 'v', n);
      if (shrink === 1 && l2 === 0) {
        // no weight decay (block reconstruction's V and steps): the same update with fewer operations
        const a1 = 1 - b1;
        const a2 = 1 - b2;
        for (let i = 0; i < n; i++) {
          const gi = g[i]!;
          const mi = b1 * m[i]! + a1 * gi;
          const vi = b2 * v[i]! + a2 * gi * gi;
          m[i] = mi;
          v[i] = vi;
          p[i] = p[i]! - (stepSize * mi) / (Math.sqrt(vi) * invSqrtC2 + eps);
        }
        continue;
      }
      for (let i = 0; i < n; i++) {
        const pi = p[i]! * shrink;
        const gi = g[i]! + l2 * p[i]!;
        const mi = b1 * m[i]! + (1 - b1) * gi;
        const vi = b2 * v[i]! + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - (stepSize * mi) / (Math.sqrt(vi) * invSqrtC2 + eps);
      }
    }
    this.steps++;
  }
}

export function createOptimizer(c: OptimizerConfig): Optimizer {
  switch (c.kind) {
    case 'sgd': return new Sgd(c);
    case 'adam': return new Adam(c);
    case 'adamw': return new Adam({ ...c, decoupled: true });
    default: throw new TtaqError('CONFIG_INVALID', `unknown optimizer kind '${(c as { kind: string }).kind}'; use 'sgd', 'adam' or 'adamw'`);
  }
}

/** The config that recreates an optimizer of a saved state (then `load` it). */
export function stateConfig(s: OptimizerState): OptimizerConfig {
  const h = s.hyper as Record<string, number | boolean>;
  if (s.kind === 'sgd') {
    return { kind: 'sgd', lr: Number(h['lr']), momentum: Number(h['momentum'] ?? 0), dampening: Number(h['dampening'] ?? 0), nesterov: Boolean(h['nesterov']), weightDecay: Number(h['weightDecay'] ?? 0) };
  }
  return { kind: 'adam', lr: Number(h['lr']), beta1: Number(h['beta1'] ?? 0.9), beta2: Number(h['beta2'] ?? 0.999), eps: Number(h['eps'] ?? 1e-8), weightDecay: Number(h['weightDecay'] ?? 0), decoupled: Boolean(h['decoupled']) };
}
