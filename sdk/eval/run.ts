// The evaluation loop: for every model x method, a fresh Adapter runs through the domain blocks in
// order (passes times, never reset between domains), predicting each batch from the same forward
// pass that adapts on it; the error is counted online, per domain and per pass.
import { Adapter, type AdapterCounters, type AdaptOptionsInput } from '../adapt/index.ts';
import { DataRng, orderByLabels, select, type LabelOrder } from '../data/index.ts';
import { TtaqError } from '../errors/index.ts';
import type { Manifest } from '../manifest/index.ts';
import type { Model } from '../onnx/types.ts';
import { noProgress, type ProgressFn } from '../progress/index.ts';
import type { SessionOptions } from '../runtime/index.ts';
import type { DomainBlock } from './domains.ts';
import { InputPipeline } from './input.ts';

export interface EvalModel {
  readonly name: string;
  readonly model: Model | Uint8Array;
  readonly manifest: Manifest;
}

export interface EvalRunOptions {
  readonly protocol: string;
  readonly batch: number;
  readonly passes: number;
  /** Label order used to reshuffle each domain on passes after the first. */
  readonly order: LabelOrder;
  readonly seed: number;
  /** Options applied over every method's preset. */
  readonly adapt?: AdaptOptionsInput;
  readonly session?: SessionOptions;
  readonly onProgress?: ProgressFn;
  /** Rows finished by an earlier, interrupted run (rowKey -> row): reused, not run again. */
  readonly finished?: ReadonlyMap<string, EvalRow>;
  /** Called with each row this run computes, as soon as it is done (a journal keeps them). */
  readonly onRow?: (row: EvalRow, key: string) => void;
}

/** Identifies a row across runs: the model by name and SHA-256, and the method text. */
export const rowKey = (m: Pick<EvalModel, 'name' | 'manifest'>, method: string): string => `${m.name}\u0000${m.manifest.sha256}\u0000${method}`;

export interface EvalRow {
  readonly model: string;
  readonly method: string;
  readonly protocol: string;
  readonly batch: number;
  /** Domain names in order. */
  readonly domains: readonly string[];
  /** Error (%) per domain in the last pass. */
  readonly errors: readonly number[];
  /** Mean of `errors`. */
  readonly mean: number;
  /** Mean error (%) of each pass (one entry per pass). */
  readonly passMeans: readonly number[];
  /** Error (%) per pass and domain. */
  readonly passErrors: readonly (readonly number[])[];
  readonly counters: AdapterCounters;
  readonly images: number;
  readonly seconds: number;
}

/** `a.b=value` pairs into a nested options object (numbers and booleans parsed). */
export function parseOptionPairs(pairs: readonly string[], where: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of pairs) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new TtaqError('CLI_USAGE', `${where}: '${s}' is not key=value (e.g. abl.tau=0)`);
    const path = s.slice(0, eq).split('.');
    const raw = s.slice(eq + 1);
    const value: unknown = raw === 'true' ? true : raw === 'false' ? false : raw !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
    let o = out;
    for (const k of path.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
    o[path[path.length - 1]!] = value;
  }
  return out;
}

/** Deep merge of plain option objects (b wins). */
export function mergeOptions(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = prev && typeof prev === 'object' && !Array.isArray(prev) && v && typeof v === 'object' && !Array.isArray(v) ? mergeOptions(prev as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

/**
 * A method spec: `preset[:norm][@key=value,key=value]`, e.g. `abl:robust@abl.tau=0,lr=5e-4`.
 * Returns the preset part and the option overrides.
 */
export function parseMethodSpec(spec: string): { method: string; options: AdaptOptionsInput } {
  const at = spec.indexOf('@');
  if (at < 0) return { method: spec, options: {} };
  const pairs = spec.slice(at + 1).split(',').map((x) => x.trim()).filter(Boolean);
  return { method: spec.slice(0, at), options: parseOptionPairs(pairs, `method '${spec}'`) as AdaptOptionsInput };
}

const mean = (xs: readonly number[]): number => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);

/** Runs one model with one method over the blocks. */
export async function evaluateOne(m: EvalModel, method: string, blocks: readonly DomainBlock[], o: EvalRunOptions, done = { n: 0 }, total = 0): Promise<EvalRow> {
  if (blocks.length === 0) throw new TtaqError('CLI_USAGE', 'no domains to evaluate on; check --domains and --data');
  const pre = m.manifest.preprocess;
  const spec = parseMethodSpec(method);
  const options = mergeOptions((o.adapt ?? {}) as Record<string, unknown>, spec.options as Record<string, unknown>) as AdaptOptionsInput;
  const adapter = await Adapter.create({ model: m.model, manifest: m.manifest, method: spec.method, options, ...(o.session ? { session: o.session } : {}), source: `model '${m.name}'` });
  const input = new InputPipeline(pre, o.session);
  const onProgress = o.onProgress ?? noProgress;
  const classes = adapter.classes;
  const started = Date.now();
  const passErrors: number[][] = [];
  let images = 0;
  try {
    for (let pass = 0; pass < o.passes; pass++) {
      const rng = new DataRng(o.seed, pass, 0xe7a1);
      const errs: number[] = [];
      for (const block of blocks) {
        let d = block.data;
        if (pass > 0) d = select(d, orderByLabels(rng.shuffle(Array.from({ length: d.count }, (_, i) => i)), (i) => d.labels[i]!, classes, o.order, rng));
        let wrong = 0;
        for (let s = 0; s < d.count; s += o.batch) {
          const n = Math.min(o.batch, d.count - s);
          const part = select(d, Array.from({ length: n }, (_, i) => s + i));
          const r = await adapter.step(await input.run(part));
          for (let i = 0; i < n; i++) if (r.predictions[i] !== part.labels[i]) wrong++;
          images += n;
          done.n += n;
          onProgress({ stage: `${m.name} ${method}`, done: done.n, total: total || done.n, info: `pass ${pass + 1} ${block.name}` });
        }
        errs.push((100 * wrong) / Math.max(1, d.count));
      }
      passErrors.push(errs);
    }
  } finally {
    await adapter.close();
    await input.close();
  }
  const last = passErrors[passErrors.length - 1]!;
  return {
    model: m.name,
    method,
    protocol: o.protocol,
    batch: o.batch,
    domains: blocks.map((b) => b.name),
    errors: last,
    mean: mean(last),
    passMeans: passErrors.map(mean),
    passErrors,
    counters: { ...adapter.counters },
    images,
    seconds: (Date.now() - started) / 1000,
  };
}

/** Every model x method, in order; rows in `o.finished` are taken as they are. */
export async function evaluate(models: readonly EvalModel[], methods: readonly string[], blocks: readonly DomainBlock[], o: EvalRunOptions): Promise<EvalRow[]> {
  if (!Array.isArray(models) || !Array.isArray(methods) || !Array.isArray(blocks) || !o || !(Number.isInteger(o.passes) && o.passes >= 1)) {
    throw new TtaqError('CONFIG_INVALID', 'evaluate(models, methods, blocks, options): models (loaded model + manifest each), methods (e.g. [\'source\', \'abl\']) and blocks (from corruptedFashionMnist or folderDomains) are arrays, and options.passes an integer >= 1');
  }
  const perRun = blocks.reduce((s, b) => s + b.data.count, 0) * o.passes;
  const total = perRun * models.length * methods.length;
  const done = { n: 0 };
  const rows: EvalRow[] = [];
  for (const m of models) {
    for (const method of methods) {
      const key = rowKey(m, method);
      const kept = o.finished?.get(key);
      if (kept) {
        done.n += perRun;
        o.onProgress?.({ stage: `${m.name} ${method}`, done: done.n, total, info: 'finished earlier' });
        rows.push(kept);
        continue;
      }
      const row = await evaluateOne(m, method, blocks, o, done, total);
      o.onRow?.(row, key);
      rows.push(row);
    }
  }
  return rows;
}
