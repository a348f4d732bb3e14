// The adapter's options: one zod schema, defaults in one place, validated at the edge. The
// TypeScript types are inferred from the schema. Defaults follow docs/METHOD.md (## Adaptation).
import { z } from 'zod';
import { TtaqError } from '../errors/index.ts';

/** Which loss drives the update of the BN affine parameters. */
export const LossKindSchema = z.enum([
  /** No update (with `norm: 'source'` the plain source model, with `'batch'` BN-adapt). */
  'none',
  /** TENT: mean prediction entropy over the batch. */
  'entropy',
  /** EATA-style: entropy over samples below the entropy margin, weighted by exp(E0 - H). */
  'eata',
  /** ABL: adaptive balanced loss (SPEC section 5). */
  'abl',
]);
export type LossKind = z.infer<typeof LossKindSchema>;

/**
 * How BN normalises at test time.
 * - source: the statistics fed in (the source running statistics; robust EMA when mode is robust)
 * - batch: the statistics of the current batch (TENT, BN-adapt); needs batches of about 16+
 * - robust: (1 - alpha) * EMA + alpha * batch, with the EMA (started at the source statistics)
 *   replaced by the mixed statistics after every step (RoTTA-style); works for batches of 1-8
 */
export const NormModeSchema = z.enum(['source', 'batch', 'robust']);
export type NormMode = z.infer<typeof NormModeSchema>;

// Strict objects: a misspelt key (abl.tua) would otherwise be dropped and the run use the default.
export const AblOptionsSchema = z.strictObject({
  /** Momentum of the class statistics (pi, kappa, g). */
  momentum: z.number().min(0).max(1).default(0.95),
  // Defaults from the ablation in docs/METHOD.md (## ABL): the frequency term and the logit
  // adjustment helped, with these signs; the complexity and gradient-share terms did not.
  /** Exponent on the class frequency: w *= pi^(-a). 0 switches the term off. */
  freqExp: z.number().default(1),
  /** Exponent on the class complexity: w *= (1 + kappa)^b. 0 switches the term off. */
  complexityExp: z.number().default(0),
  /** Exponent on the accumulated gradient share: w *= (mean g / g)^c. 0 switches the term off. */
  gradExp: z.number().default(0),
  /** Logit adjustment in the loss: z' = z + tau * log(pi). 0 switches it off. */
  tau: z.number().default(1),
  /**
   * How the per-sample weights are normalised: 'batch' to mean 1 over the batch (SPEC), 'prior' by
   * their expectation under pi (so a small batch of one frequent class weighs little).
   */
  weightNorm: z.enum(['batch', 'prior']).default('batch'),
  /** Upper bound of a per-sample weight relative to the batch mean (keeps rare-class spikes sane). */
  maxWeight: z.number().positive().default(5),
  /** Floor of pi before log / power (avoids log 0). */
  minFreq: z.number().positive().default(1e-3),
});
export type AblOptions = z.infer<typeof AblOptionsSchema>;

export const AdaptOptionsSchema = z.strictObject({
  loss: LossKindSchema.default('entropy'),
  norm: NormModeSchema.default('batch'),
  /** Weight of the current batch's moments in robust mode, for a batch of robustAlphaBatch images. */
  robustAlpha: z.number().min(0).max(1).default(0.05),
  /**
   * Batch size robustAlpha refers to: a batch of N images gets 1 - (1 - alpha)^(N / robustAlphaBatch),
   * so the EMA spans the same number of images at every batch size (small correlated batches would
   * otherwise pull it toward the class of the current run). 0 uses robustAlpha as is.
   */
  robustAlphaBatch: z.number().min(0).default(64),
  /**
   * Robust mode: treat the mixed statistics as constants in the gradient (they hold the batch
   * moments with weight robustAlpha only). Much cheaper at batch 1-8; see docs/METHOD.md.
   */
  robustDetachStats: z.boolean().default(true),
  /**
   * Robust mode: what the normalising statistics are estimated from (docs/METHOD.md, ## Adaptation).
   * - ema: one EMA of the mixed statistics (RoTTA's update; follows the current class when a
   *   stream arrives in runs of one class, so it must move slowly);
   * - classes: one memory of BN moments per predicted class, each moved toward the moments of the
   *   batches predicted as that class; normalisation uses their class-balanced combination (mean
   *   of the class means, total variance), so a run of one class moves only its own slot;
   * - shared: the class slots as a shared domain component plus class offsets (robustSmallMemory);
   * - auto: robustSmallMemory ('shared') for batches below robustClassBelow images, 'ema' for larger ones (measured:
   *   the class memory wins at batch 4-8 on class runs and loses at batch 64 under label shift,
   *   where a batch mixes a few classes and every predicted class's slot gets the mixture).
   */
  robustMemory: z.enum(['ema', 'classes', 'shared', 'auto']).default('auto'),
  /**
   * Robust 'auto' memory: which class memory batches below robustClassBelow images use.
   * - classes: the class slots alone (each moves only when its class is predicted);
   * - shared: the class slots read as a shared domain component plus per-class offsets, tracked by
   *   a small Kalman filter: once a class's offset is known, a batch's residual against its
   *   predicted classes' slots is a domain shift and moves every slot, so slots of classes not yet
   *   seen in a new domain no longer hold the old one (docs/METHOD.md, ## Adaptation).
   */
  robustSmallMemory: z.enum(['classes', 'shared']).default('shared'),
  /** Robust 'auto' memory: batches below this many images use the class memory. */
  robustClassBelow: z.number().int().min(1).default(16),
  /** Robust 'classes' memory: per-image rate, a class slot moves 1 - (1 - rate)^n toward a batch with n images predicted as it. */
  robustClassRate: z.number().min(0).max(1).default(0.03),
  /**
   * Robust 'shared' memory: per-image process noise of the shared (domain) component, in units of
   * the noise of one image's moments (the steady per-image rate of the shared component is about
   * its square root).
   */
  robustSharedNoise: z.number().min(0).default(4e-4),
  /** Robust 'shared' memory: per-image process noise of each class offset (how fast offsets may drift; 1e-6 before issue #6 round 2). */
  robustOffsetNoise: z.number().min(0).default(1e-5),
  /**
   * Robust 'shared' memory: attribute a batch to classes by its summed softmax probabilities
   * instead of its argmax counts (an uncertain prediction then blames no single class's slot).
   */
  robustSoftShares: z.boolean().default(true),
  /**
   * Robust 'shared' memory: the fraction of the adapted BN layers, first ones first, that use it;
   * the later layers keep the class memory. In deep layers the class offsets are large against the
   * domain shift, so a mispredicted batch would move the shared component by a whole offset
   * (measured in docs/METHOD.md: all layers 23.7 %, the first half 21.4 %, none 24.2 %).
   */
  robustSharedLayers: z.number().min(0).max(1).default(0.5),
  /**
   * Robust 'shared' memory: the per-image class rate (as robustClassRate) of the layers past
   * robustSharedLayers, which keep the class memory. Slower than the 'classes' memory's 0.03: the
   * shared layers already follow the domain, and a slower deep memory follows a run of one
   * (possibly mispredicted) class less (camera, batch 4, 1,000 per domain: 0.03 21.4 %, 0.015 20.0 %).
   */
  robustDeepClassRate: z.number().min(0).max(1).default(0.015),
  /** Robust 'shared' memory: prior variance of a class offset before its class is seen (same units). */
  robustOffsetPrior: z.number().positive().default(1),
  /** Pulls the robust EMA statistics toward the source ones after every step (0 = off). */
  robustSourcePull: z.number().min(0).max(1).default(0),
  /** Entropy margin as a fraction of ln C (EATA filter; used by eata and abl). */
  entropyMargin: z.number().positive().default(0.4),
  optimizer: z.enum(['adam', 'sgd']).default('adam'),
  lr: z.number().positive().default(1e-3),
  /** SGD momentum (ignored by Adam). */
  momentum: z.number().min(0).max(1).default(0.9),
  beta1: z.number().min(0).max(1).default(0.9),
  beta2: z.number().min(0).max(1).default(0.999),
  weightDecay: z.number().min(0).default(0),
  /**
   * Images per parameter update: the gradients of smaller batches are summed (each weighted by its
   * share of the images) until at least this many images have been seen, then one optimiser step is
   * taken. Keeps the number and the noise of the steps at batch 1-8 what they are at batch 64.
   * 0 or 1: one update per batch.
   */
  updateEvery: z.number().int().min(0).default(64),
  /** L2 anchor to the source parameters: loss += anchor / 2 * ||theta - theta_src||^2. 0 = off. */
  anchor: z.number().min(0).default(0),
  /**
   * BN nodes to adapt. Default: the manifest's adaptation.bnNodes, else every
   * BatchNormalization node of the model.
   */
  bnNodes: z.array(z.string()).optional(),
  /** Leaves the affine parameters of the last n adapted BN nodes frozen (they still normalise). */
  freezeLast: z.number().int().min(0).default(0),
  /** Restores source parameters and statistics before every step (no accumulation). */
  episodic: z.boolean().default(false),
  /** Collapse guard: EMA momentum of the batch mean normalised entropy H / ln C. */
  collapseMomentum: z.number().min(0).max(1).default(0.9),
  /**
   * Batch size collapseMomentum (and collapseWarmup) refer to: a batch of N images gets momentum
   * collapseMomentum^(N / collapseMomentumBatch) and, below it, a warm-up of proportionally more
   * steps, so the guard watches the same number of images at every batch size (at batch 4 a run of
   * one confident class otherwise reads as a collapse; docs/METHOD.md, ## Adaptation). 0: per batch
   * whatever its size (before issue #6 round 2).
   */
  collapseMomentumBatch: z.number().min(0).default(64),
  /** Reset to source when the entropy EMA falls below this (normalised units, 0 = off). */
  collapseEntropy: z.number().min(0).max(1).default(0.02),
  /** Steps before the collapse guard may fire (lets the EMA settle). */
  collapseWarmup: z.number().int().min(0).default(10),
  abl: AblOptionsSchema.default(AblOptionsSchema.parse({})),
});
export type AdaptOptions = z.infer<typeof AdaptOptionsSchema>;
export type AdaptOptionsInput = z.input<typeof AdaptOptionsSchema>;

export function parseAdaptOptions(input: AdaptOptionsInput = {}, source = 'adapter options'): AdaptOptions {
  const r = AdaptOptionsSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      const prefix = issue.path.map((p) => `${String(p)}.`).join('');
      const valid = issue.path[0] === 'abl' ? Object.keys(AblOptionsSchema.shape).map((k) => `abl.${k}`) : [...Object.keys(AdaptOptionsSchema.shape).filter((k) => k !== 'abl'), 'abl.<key>'];
      const keys = issue.keys.map((k) => `'${prefix}${k}'`).join(', ');
      throw new TtaqError('CONFIG_INVALID', `${source}: unknown option${issue.keys.length > 1 ? 's' : ''} ${keys}; valid keys: ${valid.join(', ')}`, { path: issue.path, keys: issue.keys });
    }
    throw new TtaqError('CONFIG_INVALID', `${source}: '${issue.path.join('.') || '(root)'}' ${issue.message}; see AdaptOptionsSchema in sdk/adapt/options.ts for the allowed values`, { path: issue.path });
  }
  return r.data;
}

/**
 * Named presets for the evaluation protocols and the agent. `abl` is ttaq's adaptation;
 * `ttaq` is an alias. A method name may carry a normalisation suffix: `tent:robust`.
 */
export const METHOD_PRESETS: Readonly<Record<string, AdaptOptionsInput>> = {
  source: { loss: 'none', norm: 'source' },
  bn: { loss: 'none', norm: 'batch' },
  tent: { loss: 'entropy', norm: 'batch' },
  eata: { loss: 'eata', norm: 'batch', anchor: 1 },
  // The L2 anchor keeps long streams stable (docs/METHOD.md, ## ABL: 10 passes drift 4.7 points without it).
  abl: { loss: 'abl', norm: 'batch', anchor: 1 },
  ttaq: { loss: 'abl', norm: 'batch', anchor: 1 },
};

/** Options for a method name such as `tent`, `abl:robust`, `bn:robust`. */
export function methodOptions(method: string, overrides: AdaptOptionsInput = {}): AdaptOptions {
  const [name, norm] = method.split(':');
  const preset = METHOD_PRESETS[name ?? ''];
  if (!preset) {
    throw new TtaqError('CONFIG_INVALID', `unknown adaptation method '${method}'; use one of ${Object.keys(METHOD_PRESETS).join(', ')}, optionally with :source, :batch or :robust`);
  }
  const merged: AdaptOptionsInput = { ...preset, ...overrides };
  if (norm !== undefined) {
    const n = NormModeSchema.safeParse(norm);
    if (!n.success) throw new TtaqError('CONFIG_INVALID', `method '${method}': unknown normalisation '${norm}'; use source, batch or robust`);
    merged.norm = n.data;
  }
  return parseAdaptOptions(merged, `method '${method}'`);
}
