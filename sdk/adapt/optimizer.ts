// The adapter's optimiser: sdk/optim's Adam or SGD over the small parameter vectors (BN scales and
// biases, a few thousand numbers), updated in place. This file only adapts sdk/optim's named-map
// interface to the adapter's ordered list of vectors and keeps the moment layout the state blob has
// always had (format version 1): one Float32Array per parameter and moment, in parameter order,
// Adam [m, v] per parameter, SGD [momentum buffer] per parameter.
import { Adam, Sgd, type Optimizer } from '../optim/index.ts';

export interface VectorOptimizer {
  readonly kind: 'adam' | 'sgd';
  /** Updates params[i] in place from grads[i]. */
  step(params: readonly Float32Array[], grads: readonly ArrayLike<number>[]): void;
  /** Forgets the moments and the step count. */
  reset(): void;
  /** Moments (one Float32Array per parameter and moment) and the step count. */
  exportState(): { t: number; moments: Float32Array[] };
  importState(s: { t: number; moments: readonly Float32Array[] }): void;
}

export interface VectorOptimizerOptions {
  readonly kind: 'adam' | 'sgd';
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly eps?: number;
}

const name = (i: number): string => `p${i}`;

export function createVectorOptimizer(sizes: readonly number[], o: VectorOptimizerOptions): VectorOptimizer {
  const opt: Optimizer = o.kind === 'adam'
    ? new Adam({ lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps ?? 1e-8, weightDecay: o.weightDecay })
    : new Sgd({ lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay });
  const slots = o.kind === 'adam' ? ['m', 'v'] : ['momentum'];
  return {
    kind: o.kind,
    step(params, grads) {
      const p = new Map<string, Float32Array>();
      const g = new Map<string, Float32Array>();
      params.forEach((x, i) => {
        p.set(name(i), x);
        const gi = grads[i]!;
        g.set(name(i), gi instanceof Float32Array ? gi : Float32Array.from(gi));
      });
      opt.step(p, g);
    },
    reset: () => opt.reset(),
    exportState() {
      const s = opt.state();
      // Buffers sdk/optim has not created yet (before the first step; SGD without momentum) are zeros.
      const moments = sizes.flatMap((n, i) => slots.map((k) => Float32Array.from(s.slots[name(i)]?.[k] ?? new Float32Array(n))));
      return { t: s.steps, moments };
    },
    importState(s) {
      if (s.moments.length !== sizes.length * slots.length) throw new Error('optimizer state has the wrong number of moments');
      const st: Record<string, Record<string, Float32Array>> = {};
      sizes.forEach((n, i) => {
        st[name(i)] = Object.fromEntries(slots.map((k, j) => {
          const m = s.moments[i * slots.length + j]!;
          if (m.length !== n) throw new Error('optimizer moment has the wrong length');
          return [k, Float32Array.from(m)];
        }));
      });
      const cur = opt.state();
      opt.load({ ...cur, steps: s.t, slots: st });
    },
  };
}
