// Options of `quantize` (and of `ttaq quantize`): one zod schema, defaults in one place.
import { z } from 'zod';
import { TtaqError } from '../errors/index.ts';

export const METHODS = ['minmax', 'mse', 'adaround', 'brecq', 'qdrop', 'ttaq'] as const;
export type Method = (typeof METHODS)[number];
export const PRESETS = { fast: 500, default: 2000, paper: 20000 } as const;

/**
 * `--method ttaq`'s weights of the PEM and PCR terms. PEM at 1 (its expected perturbation energy
 * counted like the reconstruction error) over-regularised the rounding in every measurement: W2A4
 * ResNet-20 at the default preset lost 1.87 pt clean against 0.58 at 0.1 and 0.43 without PEM, and
 * MobileNet W4A4 lost 2.4 pt more than without it (docs/METHOD.md, docs/RESULTS.md).
 */
export const TTAQ_TERMS = { pem: 0.1, pcr: 1 } as const;
export type Preset = keyof typeof PRESETS;

const Override = z.strictObject({
  match: z.string().min(1),
  wBits: z.number().int().optional(),
  aBits: z.number().int().optional(),
  skip: z.boolean().optional(),
});

const Perturbation = z.strictObject({ kind: z.enum(['noise', 'blur', 'contrast', 'brightness']), strength: z.number().nonnegative() });

// Strict: a misspelt key (`iteration: 5`) is an error naming the valid keys, not a silent default run.
export const QuantizeOptionsSchema = z.strictObject({
  /** Weight bit width: 2, 3, 4 or 8. */
  wBits: z.number().int(),
  /** Activation bit width: 2, 3, 4 or 8. */
  aBits: z.number().int(),
  method: z.enum(METHODS).default('ttaq'),
  /** Reconstruction iterations per block: fast 500, default 2000, paper 20000. */
  preset: z.enum(['fast', 'default', 'paper']).default('default'),
  /** Overrides the preset's iteration count. */
  iterations: z.number().int().nonnegative().optional(),
  /** Calibration images used (default 1024). */
  calibImages: z.number().int().positive().default(1024),
  /** Fewest calibration images accepted (default 32, one batch). */
  minCalibImages: z.number().int().positive().default(32),
  /** PEM weight; default TTAQ_TERMS.pem (0.1) for method ttaq, 0 otherwise. */
  pem: z.number().nonnegative().optional(),
  /** PCR weight; default TTAQ_TERMS.pcr (1) for method ttaq, 0 otherwise. */
  pcr: z.number().nonnegative().optional(),
  pcrGamma: z.number().nonnegative().default(0.1),
  pcrTemperature: z.number().positive().default(1),
  perturbations: z.array(Perturbation).optional(),
  /** Width of the first and last weighted layers; null keeps them at the global widths. */
  firstLastBits: z.number().int().nullable().default(8),
  inputBits: z.number().int().default(8),
  weightSymmetric: z.boolean().default(false),
  overrides: z.array(Override).default([]),
  /** Activation calibration: default 'minmax' for method minmax, else 'mse'. */
  actCalib: z.enum(['minmax', 'percentile', 'mse']).optional(),
  percentile: z.number().gt(50).lte(100).default(99.99),
  actImages: z.number().int().positive().default(256),
  actSearch: z.enum(['ort', 'js']).default('ort'),
  /** Where the weight Lp search runs: onnxruntime, or the JavaScript reference. */
  weightSearch: z.enum(['ort', 'js']).default('ort'),
  /** Lp exponent of the weight search. */
  weightP: z.number().positive().default(2.4),
  biasCorrection: z.boolean().default(false),
  /** Insert BN after convs of a BN-folded model: 'auto' when the model has no BN at all. */
  bnInsertion: z.enum(['auto', 'always', 'never']).default('auto'),
  batch: z.number().int().positive().default(32),
  seed: z.number().int().default(0),
  lrV: z.number().positive().default(1e-3),
  lrStep: z.number().positive().default(4e-5),
  roundWeight: z.number().nonnegative().default(0.01),
  betaStart: z.number().positive().default(20),
  betaEnd: z.number().positive().default(2),
  warmup: z.number().min(0).max(1).default(0.2),
  /** Probability of the quantized block input per element (QDrop); default 0.5 for qdrop/ttaq, 1 for adaround/brecq. */
  inputQuantProb: z.number().min(0).max(1).optional(),
  /** Which block learns the step of a quantizer between two blocks: 'producer' (as QDrop: the block
   * whose output it quantizes) or 'consumer' (the block it feeds; one more convolution per step).
   * docs/METHOD.md, "Who learns a quantizer's step". */
  stepOwner: z.enum(['producer', 'consumer']).default('producer'),
  /** Images for the per-layer SQNR report (default 128; 0 skips it). */
  reportImages: z.number().int().nonnegative().default(128),
  /** Accuracy images on which the true-width and INT8-container exports are compared (default the
   * first 1,000; 0 skips it). Each pass over the 10,000 Fashion-MNIST test images took 4-5 s here:
   * the comparison of the whole set is asked for explicitly. */
  variantImages: z.number().int().nonnegative().default(1000),
  /** Resume file: finished blocks are stored here and skipped on a rerun with the same inputs. */
  statePath: z.string().optional(),
  intraOpThreads: z.number().int().positive().optional(),
  /** Reconstruction workers spin between ops: faster on one idle host (QDrop step 17.2 vs 22.7 ms,
   * 2 threads), slower on the shared 2-core VM even with nothing else running (whole W4A4 TTAQ
   * default preset 879 vs 663 s; docs/BENCHMARKS.md); default off. */
  spinning: z.boolean().default(false),
  /** Data-parallel reconstruction: each step's batch in this many slices run at once, one on this
   * thread and the others in worker threads ('auto': one per core, at most 2; a count that does not
   * divide the batch is lowered until it does). On the 2-core development VM 2 slices made a TTAQ
   * step 1.37x and a QDrop step 1.15x faster (sdk/autodiff/parallel.ts). Default 1 here; `ttaq
   * quantize` asks for 'auto'. Results match one slice up to float summation order. */
  workers: z.union([z.number().int().positive(), z.literal('auto')]).default(1),
});

export type QuantizeOptionsInput = z.input<typeof QuantizeOptionsSchema>;
export type QuantizeOptions = z.output<typeof QuantizeOptionsSchema>;

export function parseQuantizeOptions(o: unknown, source = 'quantize options'): QuantizeOptions {
  const r = QuantizeOptionsSchema.safeParse(o);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      const at = issue.path.map((p) => `${String(p)}.`).join('');
      const valid = issue.path.length === 0 ? Object.keys(QuantizeOptionsSchema.shape) : issue.path.includes('overrides') ? Object.keys(Override.shape) : Object.keys(Perturbation.shape);
      const keys = issue.keys.map((k) => `'${at}${k}'`).join(', ');
      throw new TtaqError('CONFIG_INVALID', `${source}: unknown option${issue.keys.length > 1 ? 's' : ''} ${keys}; valid keys${at ? ` of ${at.slice(0, -1)}` : ''}: ${valid.join(', ')}`, { path: issue.path, keys: issue.keys });
    }
    throw new TtaqError('CONFIG_INVALID', `${source}: '${issue.path.join('.') || '(root)'}' ${issue.message}`, { path: issue.path });
  }
  return r.data;
}

/** What each method does, resolved from the options. */
export interface MethodPlan {
  readonly weightCalib: 'minmax' | 'lp';
  readonly actCalib: 'minmax' | 'percentile' | 'mse';
  readonly reconstruct: boolean;
  readonly learnActs: boolean;
  readonly inputQuantProb: number;
  readonly iterations: number;
  readonly pem: number;
  readonly pcr: number;
}

export function resolveMethod(o: QuantizeOptions): MethodPlan {
  const recon = !['minmax', 'mse'].includes(o.method);
  const ttaq = o.method === 'ttaq';
  if (!recon && ((o.pem ?? 0) > 0 || (o.pcr ?? 0) > 0)) {
    throw new TtaqError('CONFIG_INVALID', `PEM and PCR act during block reconstruction; method '${o.method}' has none. Use --method ttaq (or adaround/brecq/qdrop) or drop --pem/--pcr`);
  }
  return {
    weightCalib: o.method === 'minmax' ? 'minmax' : 'lp',
    actCalib: o.actCalib ?? (o.method === 'minmax' ? 'minmax' : 'mse'),
    reconstruct: recon,
    learnActs: recon && o.method !== 'adaround',
    inputQuantProb: o.inputQuantProb ?? (o.method === 'qdrop' || ttaq ? 0.5 : 1),
    iterations: recon ? (o.iterations ?? PRESETS[o.preset]) : 0,
    pem: recon ? (o.pem ?? (ttaq ? TTAQ_TERMS.pem : 0)) : 0,
    pcr: recon ? (o.pcr ?? (ttaq ? TTAQ_TERMS.pcr : 0)) : 0,
  };
}
