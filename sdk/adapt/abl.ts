// ABL, the adaptive balanced loss (SPEC section 5; the formula as settled is in docs/METHOD.md,
// ## ABL). The per-sample part (softmax, entropy, filter, weighting by predicted class) runs in the
// adapt-step graph; this file keeps the per-class statistics and turns them into the two
// per-class vectors the graph takes as inputs: the class weight v_k and the logit offset
// tau * log(pi_k). Everything here is a loop over C classes, never over tensor elements.
import type { AblOptions } from './options.ts';

/** Per-class statistics, all estimated without labels. */
export interface AblStats {
  /** Class frequency pi (sums to 1), EMA of the mean predicted probabilities. */
  readonly freq: Float64Array;
  /** Class complexity kappa in [0, 1], EMA of the normalised entropy of samples predicted as k. */
  readonly complexity: Float64Array;
  /** Accumulated gradient share g, EMA of sum_i |dL/dz_ik|. */
  readonly grad: Float64Array;
  /** Batches that updated the statistics. */
  updates: number;
  /** Batches whose loss drew gradient (g updated). */
  gradUpdates: number;
}

export function initAblStats(classes: number): AblStats {
  return {
    freq: new Float64Array(classes).fill(1 / classes),
    complexity: new Float64Array(classes),
    grad: new Float64Array(classes),
    updates: 0,
    gradUpdates: 0,
  };
}

/** What the adapt-step graph reports per batch, reduced over the batch (vectors of length C). */
export interface BatchClassSummary {
  /** Batch size N. */
  readonly n: number;
  /** sum_i p_ik. */
  readonly probSum: ArrayLike<number>;
  /** Number of samples predicted as k. */
  readonly predCount: ArrayLike<number>;
  /** sum over samples predicted as k of H(p_i) / ln C. */
  readonly predEntropySum: ArrayLike<number>;
  /** sum_i |dL/dz_ik| (raw logits); undefined when the step drew no gradient. */
  readonly gradAbsSum?: ArrayLike<number>;
}

/** Updates pi, kappa and g from one batch (in place). */
export function updateAblStats(s: AblStats, b: BatchClassSummary, o: AblOptions): void {
  const m = o.momentum;
  const C = s.freq.length;
  let total = 0;
  for (let k = 0; k < C; k++) {
    s.freq[k] = m * s.freq[k]! + (1 - m) * (Number(b.probSum[k]) / b.n);
    total += s.freq[k]!;
  }
  for (let k = 0; k < C; k++) s.freq[k] = s.freq[k]! / total;
  for (let k = 0; k < C; k++) {
    const cnt = Number(b.predCount[k]);
    if (cnt > 0) s.complexity[k] = m * s.complexity[k]! + (1 - m) * (Number(b.predEntropySum[k]) / cnt);
  }
  if (b.gradAbsSum) {
    if (s.gradUpdates === 0) {
      for (let k = 0; k < C; k++) s.grad[k] = Number(b.gradAbsSum[k]);
    } else {
      for (let k = 0; k < C; k++) s.grad[k] = m * s.grad[k]! + (1 - m) * Number(b.gradAbsSum[k]);
    }
    s.gradUpdates++;
  }
  s.updates++;
}

/**
 * Per-class weight v_k = pi_k^(-a) * (1 + kappa_k)^b * (mean g / g_k)^c. The graph gathers
 * v at each sample's predicted class and normalises the batch to mean 1 (then clips at maxWeight);
 * with weightNorm 'prior' the adapter divides v by sum_k pi_k v_k instead and the graph uses it as is.
 * With all exponents 0, v = 1.
 */
export function classWeights(s: AblStats, o: AblOptions): Float32Array {
  const C = s.freq.length;
  const v = new Float32Array(C);
  let gMean = 0;
  for (let k = 0; k < C; k++) gMean += s.grad[k]! / C;
  const useGrad = o.gradExp !== 0 && s.gradUpdates > 0 && gMean > 0;
  const gEps = gMean * 1e-3 + 1e-12;
  for (let k = 0; k < C; k++) {
    let w = 1;
    if (o.freqExp !== 0) w *= Math.pow(Math.max(s.freq[k]!, o.minFreq), -o.freqExp);
    if (o.complexityExp !== 0) w *= Math.pow(1 + s.complexity[k]!, o.complexityExp);
    if (useGrad) w *= Math.pow((gMean + gEps) / (s.grad[k]! + gEps), o.gradExp);
    v[k] = w;
  }
  return v;
}

/** The logit offset tau * log(pi) added to the logits inside the loss (zeros when tau = 0). */
export function logitOffset(s: AblStats, o: AblOptions): Float32Array {
  const C = s.freq.length;
  const out = new Float32Array(C);
  if (o.tau === 0) return out;
  for (let k = 0; k < C; k++) out[k] = o.tau * Math.log(Math.max(s.freq[k]!, o.minFreq));
  return out;
}
