// Robust normalisation's memory of the stream's BN statistics: the statistics fed to the next batch
// from an EMA of batch moments ('ema'), from per-class slots combined class-balanced ('classes'),
// or from those slots read as a shared domain component plus class offsets ('shared', a Kalman
// filter). The Adapter owns the fed statistics and hands their arrays in; this module keeps the
// class slots and uncertainties, and writes the fed statistics in place. Loops run over classes x
// channels, never over images.
import type { Tensor, TensorOf } from '../onnx/types.ts';
import type { BnLayer } from './bn.ts';
import type { AdaptOptions } from './options.ts';

/** Reads one array of a saved state; throws ADAPT_BAD_STATE when it is missing or of another length. */
export type StateArray = (name: string, len: number) => Float32Array | Float64Array;

export class RobustMemory {
  /** Robust 'classes' memory: per layer, C x channels class means and variances (class-major). */
  private readonly classMean: Float32Array[];
  private readonly classVar: Float32Array[];
  /** Robust 'shared' memory: uncertainty of the shared component and of each class offset. */
  private sharedP = 0;
  private readonly offsetP: Float64Array;

  constructor(
    private readonly layers: readonly BnLayer[],
    private readonly classes: number,
    private readonly options: AdaptOptions,
    /** The statistics fed to the next batch, per layer: the adapter's arrays, written in place. */
    private readonly fedMean: readonly Float32Array[],
    private readonly fedVar: readonly Float32Array[],
  ) {
    const useClasses = options.norm === 'robust' && options.robustMemory !== 'ema';
    this.classMean = useClasses ? layers.map((l) => tile(l.source.mean, classes)) : [];
    this.classVar = useClasses ? layers.map((l) => tile(l.source.var, classes)) : [];
    this.offsetP = new Float64Array(classes).fill(options.robustOffsetPrior);
  }

  /** Every class slot back to the source statistics, the uncertainties to their priors. */
  reset(): void {
    this.layers.forEach((l, i) => {
      if (this.classMean[i]) {
        this.classMean[i]!.set(tile(l.source.mean, this.classes));
        this.classVar[i]!.set(tile(l.source.var, this.classes));
      }
    });
    this.resetUncertainty();
  }

  /** Adds the class slots and uncertainties to a state's arrays (nothing in 'ema' mode). */
  save(arrays: Map<string, Float32Array | Float64Array>): void {
    if (this.classMean.length === 0) return;
    this.layers.forEach((l, i) => {
      arrays.set(`${l.node}::class_mean`, this.classMean[i]!);
      arrays.set(`${l.node}::class_var`, this.classVar[i]!);
    });
    // The 'shared' memory's uncertainties: [P_g, P_1..P_C] (absent from blobs written before it).
    arrays.set('robust::uncertainty', Float64Array.from([this.sharedP, ...this.offsetP]));
  }

  /**
   * Reads the memory from a saved state and returns what applies it, so the caller can validate
   * everything before changing anything. Blobs written before the memory existed (or in 'ema'
   * mode) lack it; then every class slot starts at the restored fed statistics.
   */
  load(has: (name: string) => boolean, get: StateArray, restoredMean: readonly ArrayLike<number>[], restoredVar: readonly ArrayLike<number>[]): () => void {
    if (this.classMean.length === 0) return () => {};
    const slots = this.layers.map((l, i) => {
      const saved = has(`${l.node}::class_mean`) || has(`${l.node}::class_var`);
      return saved
        ? [get(`${l.node}::class_mean`, l.channels * this.classes), get(`${l.node}::class_var`, l.channels * this.classes)]
        : [tile(Float32Array.from(restoredMean[i]!), this.classes), tile(Float32Array.from(restoredVar[i]!), this.classes)];
    });
    const unc = has('robust::uncertainty') ? get('robust::uncertainty', this.classes + 1) : null;
    return () => {
      slots.forEach(([m, v], i) => {
        this.classMean[i]!.set(m!);
        this.classVar[i]!.set(v!);
      });
      if (unc) {
        this.sharedP = unc[0]!;
        this.offsetP.set(unc.subarray(1));
      } else {
        this.resetUncertainty();
      }
    };
  }

  /** Takes a batch's moments from the graph's outputs and writes the statistics fed to the next batch. */
  take(out: Record<string, Tensor>, predictions: Int32Array, logits: TensorOf<'float32'>): void {
    if (this.options.norm !== 'robust') return;
    const o = this.options;
    const memory = o.robustMemory === 'auto' ? (predictions.length < o.robustClassBelow ? o.robustSmallMemory : 'ema') : o.robustMemory;
    if (memory === 'classes') {
      this.takeClassStats(out, predictions);
      return;
    }
    if (memory === 'shared') {
      // The first robustSharedLayers of the layers use the shared memory, the rest the class memory.
      const cut = Math.round(o.robustSharedLayers * this.layers.length);
      this.takeSharedStats(out, o.robustSoftShares ? softShares(logits, this.classes) : hardShares(predictions, this.classes), cut);
      if (cut < this.layers.length) this.takeClassStats(out, predictions, cut, o.robustDeepClassRate);
      return;
    }
    const pull = this.options.robustSourcePull;
    this.layers.forEach((l, i) => {
      const m = (out[l.outputs!.mean] as TensorOf<'float32'>).data;
      const v = (out[l.outputs!.var] as TensorOf<'float32'>).data;
      const mi = this.fedMean[i]!;
      const vi = this.fedVar[i]!;
      if (!m.every(Number.isFinite) || !v.every(Number.isFinite)) return;
      for (let c = 0; c < l.channels; c++) {
        mi[c] = pull > 0 ? (1 - pull) * m[c]! + pull * l.source.mean[c]! : m[c]!;
        vi[c] = pull > 0 ? (1 - pull) * v[c]! + pull * l.source.var[c]! : v[c]!;
      }
      // 'auto' after a large batch: the class slots follow the EMA, so a later small batch starts
      // from it rather than from stale slots.
      if (this.classMean[i]) {
        this.classMean[i]!.set(tile(mi, this.classes));
        this.classVar[i]!.set(tile(vi, this.classes));
      }
    });
    if (this.classMean.length > 0) this.resetUncertainty();
  }

  /**
   * Robust 'classes' memory: moves the slot of every predicted class k toward the batch moments by
   * 1 - (1 - rate)^n_k, then sets the statistics fed to the next batch to the class-balanced
   * combination: mean = mean_k m_k, var = mean_k (v_k + m_k^2) - mean^2 (law of total variance).
   * Loops over classes x channels (a few thousand numbers), never over images.
   */
  private takeClassStats(out: Record<string, Tensor>, predictions: Int32Array, from = 0, rate = this.options.robustClassRate): void {
    const o = this.options;
    const C = this.classes;
    const counts = new Float64Array(C);
    for (const k of predictions) if (k >= 0 && k < C) counts[k]!++;
    const pull = o.robustSourcePull;
    this.layers.forEach((l, i) => {
      if (i < from) return;
      const bm = (out[l.outputs!.batchMean] as TensorOf<'float32'>).data;
      const bv = (out[l.outputs!.batchVar] as TensorOf<'float32'>).data;
      if (!bm.every(Number.isFinite) || !bv.every(Number.isFinite)) return;
      const Ch = l.channels;
      const cm = this.classMean[i]!;
      const cv = this.classVar[i]!;
      for (let k = 0; k < C; k++) {
        const a = counts[k]! > 0 ? 1 - Math.pow(1 - rate, counts[k]!) : 0;
        for (let c = 0; c < Ch; c++) {
          const j = k * Ch + c;
          setSlot(cm, cv, j, cm[j]! + a * (bm[c]! - cm[j]!), cv[j]! + a * (bv[c]! - cv[j]!), pull, l.source, c);
        }
      }
      this.feedBalanced(i, C);
    });
  }

  /**
   * The statistics fed to the next batch from layer i's class slots: the class-balanced
   * combination, mean = mean_k m_k, var = mean_k (v_k + m_k^2) - mean^2 (law of total variance).
   */
  private feedBalanced(i: number, C: number): void {
    const cm = this.classMean[i]!;
    const cv = this.classVar[i]!;
    const mi = this.fedMean[i]!;
    const vi = this.fedVar[i]!;
    const Ch = mi.length;
    for (let c = 0; c < Ch; c++) {
      let sm = 0;
      let s2 = 0;
      for (let k = 0; k < C; k++) {
        const m = cm[k * Ch + c]!;
        sm += m;
        s2 += cv[k * Ch + c]! + m * m;
      }
      const mean = sm / C;
      mi[c] = mean;
      vi[c] = Math.max(0, s2 / C - mean * mean);
    }
  }

  /**
   * Robust 'shared' memory: the class slots read as m_k = g + d_k, a shared domain component g and
   * class offsets d_k (variances as v_k = exp(h + e_k), so they stay positive), tracked by a
   * Kalman filter with scalar uncertainties shared by every channel and layer (P_g for g, P_k per
   * offset, in units of the noise of one image's moments; cross-covariances ignored). Before each
   * batch of n images, P_g grows by n robustSharedNoise and every P_k by n robustOffsetNoise. A
   * batch with class shares p_k = n_k / n is predicted by its classes' slots (mu^ = sum_k p_k m_k,
   * var^ the pooled variance of that mixture); with S = P_g + sum_k p_k^2 P_k + 1/n the residuals
   * r = mu_b - mu^ and rho = ln(var_b / var^) move every slot by K_g = P_g / S of them
   * (m_k += K_g r, v_k *= exp(K_g rho)) and each predicted class's slot by K_k = p_k P_k / S more.
   * An unseen class's offset is uncertain (robustOffsetPrior), so its first frames go to its own
   * slot (as in the 'classes' memory); once its offset is known, a residual is a domain shift and
   * moves every slot. The statistics fed to the next batch are the class-balanced combination
   * (mean of the slot means, law of total variance). C x channels arithmetic, no image loops.
   */
  private takeSharedStats(out: Record<string, Tensor>, counts: Float64Array, cut: number): void {
    const o = this.options;
    const C = this.classes;
    const n = counts.reduce((s, x) => s + x, 0);
    if (n === 0) return;
    const P = this.offsetP;
    this.sharedP += n * o.robustSharedNoise;
    for (let k = 0; k < C; k++) P[k] = P[k]! + n * o.robustOffsetNoise;
    let S = this.sharedP + 1 / n;
    for (let k = 0; k < C; k++) S += (counts[k]! / n) ** 2 * P[k]!;
    const kg = this.sharedP / S;
    const kk = Float64Array.from(counts, (nk, k) => (nk / n) * P[k]! / S);
    this.sharedP -= kg * this.sharedP;
    for (let k = 0; k < C; k++) P[k] = P[k]! - (counts[k]! / n) * kk[k]! * P[k]!;
    const pull = o.robustSourcePull;
    this.layers.forEach((l, i) => {
      if (i >= cut) return;
      const bm = (out[l.outputs!.batchMean] as TensorOf<'float32'>).data;
      const bv = (out[l.outputs!.batchVar] as TensorOf<'float32'>).data;
      if (!bm.every(Number.isFinite) || !bv.every(Number.isFinite)) return;
      const Ch = l.channels;
      const eps = l.epsilon;
      const cm = this.classMean[i]!;
      const cv = this.classVar[i]!;
      for (let c = 0; c < Ch; c++) {
        // The batch's moments as the slots of its predicted classes predict them.
        let pm = 0;
        let p2 = 0;
        for (let k = 0; k < C; k++) {
          if (counts[k]! === 0) continue;
          const w = counts[k]! / n;
          const m = cm[k * Ch + c]!;
          pm += w * m;
          p2 += w * (cv[k * Ch + c]! + m * m);
        }
        const r = bm[c]! - pm;
        const rho = Math.log((Math.max(0, bv[c]!) + eps) / (Math.max(0, p2 - pm * pm) + eps));
        for (let k = 0; k < C; k++) {
          const j = k * Ch + c;
          const g = kg + kk[k]!;
          setSlot(cm, cv, j, cm[j]! + g * r, cv[j]! * Math.exp(g * rho), pull, l.source, c);
        }
      }
      this.feedBalanced(i, C);
    });
  }

  /** The 'shared' memory's uncertainties back to their priors (every slot equal, nothing known). */
  private resetUncertainty(): void {
    this.sharedP = 0;
    this.offsetP.fill(this.options.robustOffsetPrior);
  }
}

/** Images per predicted class (argmax), as a C-vector. */
function hardShares(predictions: Int32Array, C: number): Float64Array {
  const counts = new Float64Array(C);
  for (const k of predictions) if (k >= 0 && k < C) counts[k]!++;
  return counts;
}

/** Expected images per class: the batch's summed softmax probabilities (N x C numbers). */
function softShares(logits: TensorOf<'float32'>, C: number): Float64Array {
  const z = logits.data;
  const N = z.length / C;
  const counts = new Float64Array(C);
  const e = new Float64Array(C);
  for (let i = 0; i < N; i++) {
    let mx = -Infinity;
    for (let k = 0; k < C; k++) mx = Math.max(mx, z[i * C + k]!);
    let t = 0;
    for (let k = 0; k < C; k++) { e[k] = Math.exp(z[i * C + k]! - mx); t += e[k]!; }
    if (!(t > 0) || !Number.isFinite(t)) continue;
    for (let k = 0; k < C; k++) counts[k] = counts[k]! + e[k]! / t;
  }
  return counts;
}

/** `times` copies of v, one after another. */
function tile(v: Float32Array, times: number): Float32Array {
  const out = new Float32Array(v.length * times);
  for (let k = 0; k < times; k++) out.set(v, k * v.length);
  return out;
}

/** Writes class slot j (channel c), pulled toward the source statistics by `pull` (0 = off). */
function setSlot(cm: Float32Array, cv: Float32Array, j: number, m: number, v: number, pull: number, source: { readonly mean: ArrayLike<number>; readonly var: ArrayLike<number> }, c: number): void {
  cm[j] = pull > 0 ? (1 - pull) * m + pull * source.mean[c]! : m;
  cv[j] = pull > 0 ? (1 - pull) * v + pull * source.var[c]! : v;
}
