// Adam and SGD over the adapter's small parameter vectors (BN scales and biases: a few thousand
// numbers), updated in place in JavaScript. The moments are exposed so the adapter can put them in
// its state blob.

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

export function createVectorOptimizer(sizes: readonly number[], o: VectorOptimizerOptions): VectorOptimizer {
  const eps = o.eps ?? 1e-8;
  const nMoments = o.kind === 'adam' ? 2 : 1;
  let moments = sizes.flatMap((n) => Array.from({ length: nMoments }, () => new Float32Array(n)));
  let t = 0;
  return {
    kind: o.kind,
    step(params, grads) {
      t++;
      const bc1 = 1 - Math.pow(o.beta1, t);
      const bc2 = 1 - Math.pow(o.beta2, t);
      params.forEach((p, i) => {
        const g = grads[i]!;
        if (o.kind === 'adam') {
          const m = moments[2 * i]!;
          const v = moments[2 * i + 1]!;
          for (let j = 0; j < p.length; j++) {
            const gj = Number(g[j]) + o.weightDecay * p[j]!;
            m[j] = o.beta1 * m[j]! + (1 - o.beta1) * gj;
            v[j] = o.beta2 * v[j]! + (1 - o.beta2) * gj * gj;
            p[j] = p[j]! - (o.lr * (m[j]! / bc1)) / (Math.sqrt(v[j]! / bc2) + eps);
          }
        } else {
          const buf = moments[i]!;
          for (let j = 0; j < p.length; j++) {
            const gj = Number(g[j]) + o.weightDecay * p[j]!;
            buf[j] = t === 1 ? gj : o.momentum * buf[j]! + gj;
            p[j] = p[j]! - o.lr * buf[j]!;
          }
        }
      });
    },
    reset() {
      t = 0;
      for (const m of moments) m.fill(0);
    },
    exportState: () => ({ t, moments: moments.map((m) => Float32Array.from(m)) }),
    importState(s) {
      if (s.moments.length !== moments.length) throw new Error('optimizer state has the wrong number of moments');
      moments = s.moments.map((m, i) => {
        if (m.length !== moments[i]!.length) throw new Error('optimizer moment has the wrong length');
        return Float32Array.from(m);
      });
      t = s.t;
    },
  };
}
