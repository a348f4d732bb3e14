// Test streams for the evaluation protocols (SPEC section 7), each described by a small JSON spec
// and reproducible from its seed:
//   schedule 'blocks'   domains one after another, `perDomain` samples each at `severity`
//                       (the continual protocol: the 15 corruptions in order, one pass, no reset)
//   schedule 'mixed'    the samples of all domains pooled and interleaved at random
//   schedule 'gradual'  each domain visited at severities 1, 2, ..., severity, ..., 2, 1
//                       (perDomain samples split evenly over the levels)
// and, within a domain block (or the mixed pool), the label order:
//   shuffled     uniformly random (the i.i.d. case)
//   sequential   dataset order
//   dirichlet    label shift: the block is cut into segments of `segment` samples; each segment's
//                class proportions are drawn from Dirichlet(alpha) (normalised Gamma(alpha) draws)
//                and its samples drawn class by class from those proportions (without
//                replacement; exhausted classes drop out). alpha = 0.1 is strongly imbalanced.
//   runs         temporal correlation: runs of one class with geometric lengths of mean `meanRun`
// Passes repeat the whole schedule (long-run stability: 10 passes).
//
// `planStream` turns a spec and the source labels into a plan (which sample, domain and severity
// at each step); `materializeStream` builds the images, corrupting every (domain, severity) group
// in one batch. Sample k of the source is corrupted exactly as in a whole-dataset pass with the
// same seed, so streams agree with `ttaq corrupt` output.
import { z } from 'zod';
import { TtaqError } from '../errors/index.ts';
import type { ProgressFn } from '../progress/index.ts';
import { CORRUPTIONS, corruptImages, isCorruptionName } from './corruptions/index.ts';
import { imageSize, numClasses, select, type Dataset } from './dataset.ts';
import { DataRng, hash32, sampleDirichlet } from './rng.ts';

export const LabelOrderSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('shuffled') }),
  z.object({ kind: z.literal('sequential') }),
  z.object({ kind: z.literal('dirichlet'), alpha: z.number().positive().default(0.1), segment: z.number().int().positive().default(100) }),
  z.object({ kind: z.literal('runs'), meanRun: z.number().min(1).default(16) }),
]);
export type LabelOrder = z.infer<typeof LabelOrderSchema>;

export const StreamSpecSchema = z.object({
  format: z.literal('ttaq-stream/1').default('ttaq-stream/1'),
  seed: z.number().int().default(0),
  /** Corruption names in visiting order ('clean' = no corruption), or 'all' = the 15 in protocol order. */
  domains: z.union([z.literal('all'), z.array(z.string()).min(1)]).default('all'),
  severity: z.number().int().min(1).max(5).default(5),
  schedule: z.enum(['blocks', 'mixed', 'gradual']).default('blocks'),
  /** Samples per domain (default: the whole source); more than the source cycles through it again. */
  perDomain: z.number().int().positive().optional(),
  passes: z.number().int().positive().default(1),
  order: LabelOrderSchema.default({ kind: 'shuffled' }),
});
export type StreamSpec = z.infer<typeof StreamSpecSchema>;
export type StreamSpecInput = z.input<typeof StreamSpecSchema>;

/** Named specs: `ttaq corrupt --stream continual` etc. */
export const STREAM_PRESETS: Readonly<Record<string, StreamSpecInput>> = {
  continual: {},
  imbalanced: { order: { kind: 'dirichlet', alpha: 0.1, segment: 100 } },
  temporal: { order: { kind: 'runs', meanRun: 16 } },
  mixed: { schedule: 'mixed' },
  gradual: { schedule: 'gradual' },
};

export function parseStreamSpec(json: unknown, source = 'stream spec'): StreamSpec {
  const r = StreamSpecSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new TtaqError('DATA_BAD_SPEC', `${source}: '${issue.path.join('.') || '(root)'}' ${issue.message}`, { path: issue.path });
  }
  for (const d of streamDomains(r.data)) {
    if (d !== 'clean' && !isCorruptionName(d)) throw new TtaqError('DATA_BAD_SPEC', `${source}: unknown domain '${d}'; use 'clean' or one of ${CORRUPTIONS.join(', ')}`);
  }
  return r.data;
}

/** A preset name or a spec object. */
export function resolveStreamSpec(nameOrSpec: string | unknown, overrides: Partial<StreamSpecInput> = {}): StreamSpec {
  if (typeof nameOrSpec === 'string') {
    const preset = STREAM_PRESETS[nameOrSpec];
    if (!preset) throw new TtaqError('DATA_BAD_SPEC', `unknown stream preset '${nameOrSpec}'; use one of ${Object.keys(STREAM_PRESETS).join(', ')} or a JSON spec file`);
    return parseStreamSpec({ ...preset, ...overrides }, `preset ${nameOrSpec}`);
  }
  return parseStreamSpec({ ...(nameOrSpec as object), ...overrides });
}

export const streamDomains = (spec: StreamSpec): string[] => (spec.domains === 'all' ? [...CORRUPTIONS] : [...spec.domains]);

/** What the stream shows at each step. */
export interface StreamPlan {
  readonly spec: StreamSpec;
  readonly domains: readonly string[];
  readonly length: number;
  /** Per step: index into `domains`, severity (0 for clean), source sample index, label. */
  readonly domain: Uint16Array;
  readonly severity: Uint8Array;
  readonly index: Int32Array;
  readonly label: Int32Array;
}

/** `count` sample indices of [0, n), a fresh shuffle each time the source is used up. */
function drawIndices(rng: DataRng, n: number, count: number): number[] {
  const out: number[] = [];
  while (out.length < count) {
    const perm = rng.shuffle(Array.from({ length: n }, (_, i) => i));
    out.push(...perm.slice(0, count - out.length));
  }
  return out;
}

/** Orders items (ids) by the label-order rule; `labelOf` gives each id's class in [0, k). */
export function orderByLabels(ids: number[], labelOf: (id: number) => number, k: number, order: LabelOrder, rng: DataRng): number[] {
  if (order.kind === 'sequential') return ids;
  if (order.kind === 'shuffled') return rng.shuffle([...ids]);
  const pools: number[][] = Array.from({ length: k }, () => []);
  for (const id of ids) {
    const label = labelOf(id);
    // a label outside [0, k) has no pool: said here, not as a TypeError from pools[label]
    if (!(label >= 0 && label < k)) throw new TtaqError('DATA_BAD_FORMAT', `item ${id} has label ${label}, outside the ${k} classes (0 to ${k - 1}) the ${order.kind} order draws from; check the labels against the model's classes (checkLabelRange) before ordering`);
    pools[label]!.push(id);
  }
  for (const p of pools) rng.shuffle(p);
  const left = (): number => pools.reduce((s, p) => s + p.length, 0);
  const out: number[] = [];
  if (order.kind === 'dirichlet') {
    while (left() > 0) {
      const p = sampleDirichlet(rng, order.alpha, k);
      const m = Math.min(order.segment, left());
      for (let t = 0; t < m; t++) {
        let sum = 0;
        for (let c = 0; c < k; c++) if (pools[c]!.length > 0) sum += p[c]!;
        let cls = -1;
        if (sum > 0) {
          let u = rng.uniform() * sum;
          for (let c = 0; c < k; c++) {
            if (pools[c]!.length === 0) continue;
            u -= p[c]!;
            cls = c;
            if (u < 0) break;
          }
        } else {
          const live = pools.map((q, c) => (q.length > 0 ? c : -1)).filter((c) => c >= 0);
          cls = live[rng.int(live.length)]!;
        }
        out.push(pools[cls]!.pop()!);
      }
    }
    return out;
  }
  // runs
  let last = -1;
  while (left() > 0) {
    const live = pools.map((q, c) => (q.length > 0 && c !== last ? c : -1)).filter((c) => c >= 0);
    const cls = live.length > 0 ? live[rng.int(live.length)]! : last;
    let len = 1;
    const pStop = 1 / order.meanRun;
    while (rng.uniform() >= pStop) len++;
    for (let t = 0; t < len && pools[cls]!.length > 0; t++) out.push(pools[cls]!.pop()!);
    last = cls;
  }
  return out;
}

/** Plans a stream over a source with `labels` (and `classes` classes, default max label + 1). */
export function planStream(spec: StreamSpec, labels: ArrayLike<number>, classes?: number): StreamPlan {
  const n = labels.length;
  if (n === 0) throw new TtaqError('DATA_BAD_SPEC', 'stream: the source dataset is empty');
  let k = classes ?? 0;
  if (!classes) for (let i = 0; i < n; i++) k = Math.max(k, labels[i]! + 1);
  const domains = streamDomains(spec);
  const perDomain = spec.perDomain ?? n;
  const rng = new DataRng(spec.seed, hash32('stream'));
  const steps: { d: number; s: number; i: number }[] = [];
  const sevOf = (name: string, s: number): number => (name === 'clean' ? 0 : s);
  for (let pass = 0; pass < spec.passes; pass++) {
    if (spec.schedule === 'mixed') {
      const pool: { d: number; s: number; i: number }[] = [];
      domains.forEach((name, d) => {
        for (const i of drawIndices(rng, n, perDomain)) pool.push({ d, s: sevOf(name, spec.severity), i });
      });
      const ids = orderByLabels(pool.map((_, j) => j), (j) => labels[pool[j]!.i]!, k, spec.order, rng);
      if (spec.order.kind === 'sequential') rng.shuffle(ids);
      for (const j of ids) steps.push(pool[j]!);
      continue;
    }
    domains.forEach((name, d) => {
      const levels = spec.schedule === 'gradual'
        ? [...Array.from({ length: spec.severity }, (_, j) => j + 1), ...Array.from({ length: spec.severity - 1 }, (_, j) => spec.severity - 1 - j)]
        : [spec.severity];
      const per = Math.ceil(perDomain / levels.length);
      const ids = orderByLabels(drawIndices(rng, n, per * levels.length).slice(0, perDomain), (i) => labels[i]!, k, spec.order, rng);
      ids.forEach((i, j) => steps.push({ d, s: sevOf(name, levels[Math.min(levels.length - 1, Math.floor(j / per))]!), i }));
    });
  }
  const L = steps.length;
  const plan = { spec, domains, length: L, domain: new Uint16Array(L), severity: new Uint8Array(L), index: new Int32Array(L), label: new Int32Array(L) };
  steps.forEach((st, t) => {
    plan.domain[t] = st.d;
    plan.severity[t] = st.s;
    plan.index[t] = st.i;
    plan.label[t] = labels[st.i]!;
  });
  return plan;
}

/** A materialised stream: images in stream order plus each step's domain and severity. */
export interface StreamData extends Dataset {
  readonly domainNames: readonly string[];
  readonly domain: Uint16Array;
  readonly severity: Uint8Array;
}

/**
 * Builds a plan's images from a clean source, corrupting each (domain, severity) group in one
 * batch with `seed` (default: the spec's seed).
 */
export function materializeStream(plan: StreamPlan, source: Dataset, opts: { seed?: number; onProgress?: ProgressFn } = {}): StreamData {
  const per = imageSize(source);
  const images = new Uint8Array(plan.length * per);
  const groups = new Map<string, number[]>();
  for (let t = 0; t < plan.length; t++) {
    const key = `${plan.domain[t]}:${plan.severity[t]}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(t);
  }
  let done = 0;
  for (const [key, steps] of groups) {
    const [d, s] = key.split(':').map(Number) as [number, number];
    const name = plan.domains[d]!;
    const indices = steps.map((t) => plan.index[t]!);
    const sel = select(source, indices);
    const out = name === 'clean' ? sel.images : corruptImages(sel, name, s, { seed: opts.seed ?? plan.spec.seed, indices });
    steps.forEach((t, j) => images.set(out.subarray(j * per, (j + 1) * per), t * per));
    done += steps.length;
    opts.onProgress?.({ stage: 'corrupt stream', done, total: plan.length, info: `${name} ${s}` });
  }
  const labels = numClasses(source) <= 256 ? Uint8Array.from(plan.label) : Int32Array.from(plan.label);
  return {
    count: plan.length, height: source.height, width: source.width, channels: source.channels, images, labels,
    ...(source.classes ? { classes: source.classes } : {}),
    domainNames: plan.domains, domain: plan.domain, severity: plan.severity,
  };
}
