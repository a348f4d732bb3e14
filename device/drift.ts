// Shift detection: decides when the stream has moved away from what the model last saw, so the
// agent adapts then (and every k batches otherwise). Two signals per batch, each compared with an
// exponential moving reference of itself as a z-score:
//   - the mean prediction entropy, normalised by ln C (rises when inputs leave the training domain);
//   - when the runner reports BN statistics, their distance from the layer's reference statistics:
//     the mean over channels of the symmetric KL divergence between N(batch mean, batch var) and
//     N(ref mean, ref var), averaged over layers.
// The score is the larger z-score; a shift fires when it passes the threshold after the warm-up.
// The reference keeps moving, so a persistent new domain stops scoring high once it is the norm.
// Per-channel vectors only: small loops, not tensor math.
import type { BnBatchStats } from './ports.ts';

export interface DriftOptions {
  readonly threshold: number;
  readonly momentum: number;
  readonly warmupBatches: number;
}

export interface DriftReading {
  /** The larger z-score of the two signals (0 during warm-up). */
  readonly score: number;
  readonly entropy: number;
  readonly bnDistance?: number;
  readonly shift: boolean;
}

/** Symmetric KL between two 1-D Gaussians, per channel, averaged over channels and layers. */
export function bnDistance(stats: readonly BnBatchStats[], eps = 1e-5): number {
  let total = 0;
  let layers = 0;
  for (const s of stats) {
    const C = s.batchMean.length;
    if (C === 0) continue;
    let acc = 0;
    for (let c = 0; c < C; c++) {
      const v1 = s.batchVar[c]! + eps;
      const v2 = s.refVar[c]! + eps;
      const d2 = (s.batchMean[c]! - s.refMean[c]!) ** 2;
      // KL(1||2) + KL(2||1) = (v1/v2 + v2/v1 + d2 (1/v1 + 1/v2)) / 2 - 1
      acc += 0.5 * (v1 / v2 + v2 / v1 + d2 * (1 / v1 + 1 / v2)) - 1;
    }
    total += acc / C;
    layers++;
  }
  return layers ? total / layers : 0;
}

class Ema {
  mean = NaN;
  var = 0;
  constructor(private readonly m: number) {}

  /** z-score of x against the reference, then x folded into it. */
  score(x: number): number {
    if (Number.isNaN(this.mean)) {
      this.mean = x;
      return 0;
    }
    const sd = Math.sqrt(this.var) + 0.05 * Math.abs(this.mean) + 1e-3;
    const z = (x - this.mean) / sd;
    const d = x - this.mean;
    this.mean += (1 - this.m) * d;
    this.var = this.m * (this.var + (1 - this.m) * d * d);
    return z;
  }
}

export class DriftDetector {
  private entropy: Ema;
  private bn: Ema;
  private seen = 0;

  /** The score that counts as a shift (changeable while running: set-options shiftThreshold). */
  threshold: number;

  constructor(private readonly o: DriftOptions) {
    this.threshold = o.threshold;
    this.entropy = new Ema(o.momentum);
    this.bn = new Ema(o.momentum);
  }

  /** `meanEntropy` in nats; `classes` for the normalisation by ln C. */
  update(meanEntropy: number, classes: number, bnStats?: readonly BnBatchStats[]): DriftReading {
    const e = meanEntropy / Math.log(Math.max(2, classes));
    const ze = this.entropy.score(e);
    let zb = 0;
    let dist: number | undefined;
    if (bnStats && bnStats.length) {
      dist = bnDistance(bnStats);
      zb = this.bn.score(dist);
    }
    this.seen++;
    const warm = this.seen > this.o.warmupBatches;
    const score = warm ? Math.max(ze, zb) : 0;
    return { score, entropy: e, ...(dist !== undefined ? { bnDistance: dist } : {}), shift: warm && score > this.threshold };
  }

  /** Forgets the reference (a new model). */
  reset(): void {
    this.entropy = new Ema(this.o.momentum);
    this.bn = new Ema(this.o.momentum);
    this.seen = 0;
  }
}
