// `ttaq providers`: which execution providers this onnxruntime-node binary can run, and what each
// one actually does with our graphs: inference of a model, an adaptation step, a training step,
// each timed and compared with the CPU provider's outputs. The check to run on a Jetson or GPU
// workstation after installing a CUDA/TensorRT build (docs/JETSON.md).
import { createRequire } from 'node:module';
import * as ort from 'onnxruntime-node';
import { EXIT, intFlag, parseFlags, printJson, reportError } from './lib/cli.ts';
import { benchStep } from '../sdk/autodiff/bench.ts';
import { TtaqError } from '../sdk/errors/index.ts';
import { loadEvalModel, measureStepCost, syntheticBatch, type EvalModel } from '../sdk/eval/index.ts';
import { createSession, defaultAvailableProviders, gpuInstallHint, PROVIDER_NAMES, type ProviderName, type RuntimeLogEvent, type Session } from '../sdk/runtime/index.ts';
import { DEFAULT_MODEL_PATH } from '../sdk/bundled/index.ts';

export const summary = 'list the execution providers this binary can run and check each on a model (inference, adaptation, training)';

const HELP = `usage: ttaq providers [--model m.onnx ...] [--providers tensorrt,cuda,cpu] [--batch N] [--train] [--json]

Lists the backends onnxruntime-node registers and which GPU provider libraries are installed
beside the binding, then, for every requested provider the binary can run, creates a session for
each model on that provider alone and reports: the provider that ran it (or why it could not),
inference time at --batch, the largest logit difference and the top-1 agreement against the CPU
provider, and the time of an ABL adaptation step. --train also times a ResNet-20 training step
(batch 128) per provider.

options:
  --model P       model with its manifest beside it (repeatable; default: the bundled models/resnet20-fmnist.onnx)
  --providers L   providers to check, in order (default tensorrt,cuda,cpu)
  --batch N       batch size of the timed inference and adaptation step (default 64)
  --reps N        timed repetitions, median reported (default 20)
  --train         also time a training step per provider
  --json          machine-readable output
  -h, --help      this text

exit codes: 0 every available provider ran every check, 1 a check failed, 2 bad usage`;

export interface ProviderCheck {
  readonly provider: string;
  readonly model: string;
  /** The provider the session reports, or null when it could not be created. */
  readonly ran: string | null;
  readonly error?: string;
  readonly inferMs?: number;
  /** Largest absolute logit difference against the CPU provider (0 for the CPU row). */
  readonly maxLogitDiff?: number;
  /** Share of images whose top-1 class agrees with the CPU provider's. */
  readonly top1Agreement?: number;
  readonly adaptStepMs?: number;
  readonly adaptError?: string;
}

export interface ProvidersReport {
  readonly onnxruntimeNode: string;
  readonly platform: string;
  readonly backends: readonly { name: string; bundled: boolean }[];
  readonly available: readonly string[];
  readonly skipped: readonly { provider: string; reason: string }[];
  readonly checks: readonly ProviderCheck[];
  readonly train: readonly { provider: string; imagesPerSec?: number; stepMs?: number; error?: string }[];
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0]!;

async function timeInference(s: Session, m: EvalModel, n: number, reps: number): Promise<{ ms: number; logits: Float32Array }> {
  const x = { [m.manifest.input.name]: syntheticBatch(m, n) };
  const out = m.manifest.output.name;
  let logits = (await s.run(x, [out]))[out]!.data as Float32Array; // warm-up (TensorRT builds its engine here)
  await s.run(x, [out]);
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    logits = (await s.run(x, [out]))[out]!.data as Float32Array;
    ts.push(performance.now() - t);
  }
  return { ms: median(ts), logits };
}

function compare(a: Float32Array, ref: Float32Array, classes: number): { maxLogitDiff: number; top1Agreement: number } {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - ref[i]!));
  const argmax = (v: Float32Array, r: number): number => {
    let k = 0;
    for (let c = 1; c < classes; c++) if (v[r * classes + c]! > v[r * classes + k]!) k = c;
    return k;
  };
  const rows = a.length / classes;
  let agree = 0;
  for (let r = 0; r < rows; r++) if (argmax(a, r) === argmax(ref, r)) agree++;
  return { maxLogitDiff: max, top1Agreement: agree / rows };
}

export async function checkProviders(o: { models: readonly string[]; providers: readonly ProviderName[]; batch: number; reps: number; train: boolean; progress?: (line: string) => void }): Promise<ProvidersReport> {
  const say = o.progress ?? (() => {});
  const backends = ort.listSupportedBackends().map((b) => ({ name: b.name, bundled: b.bundled }));
  const available = defaultAvailableProviders();
  const skipped: { provider: string; reason: string }[] = [];
  const providers = o.providers.filter((p) => {
    if (available.includes(p)) return true;
    const b = backends.find((x) => x.name === p);
    const hint = gpuInstallHint(p);
    skipped.push({ provider: p, reason: b ? `the binding registers '${p}' but its provider library (libonnxruntime_providers_${p}.so) is not installed beside it${hint ? `; ${hint}` : ''}` : `this binary has no '${p}' backend` });
    return false;
  });
  const models = await Promise.all(o.models.map((p) => loadEvalModel(p)));
  const checks: ProviderCheck[] = [];
  const reference = new Map<string, Float32Array>();
  // CPU first: it is the reference the other providers are compared with.
  const order = [...providers].sort((a, b) => Number(b === 'cpu') - Number(a === 'cpu'));
  for (const p of order) {
    for (const m of models) {
      say(`${p}: ${m.name}: inference`);
      const events: RuntimeLogEvent[] = [];
      let s: Session | undefined;
      try {
        s = await createSession(m.model, { providers: [p], logger: (e) => events.push(e), source: m.name });
      } catch (e) {
        checks.push({ provider: p, model: m.name, ran: null, error: message(e) });
        continue;
      }
      const row: { -readonly [K in keyof ProviderCheck]: ProviderCheck[K] } = { provider: p, model: m.name, ran: s.provider };
      try {
        const r = await timeInference(s, m, o.batch, o.reps);
        row.inferMs = r.ms;
        if (p === 'cpu') reference.set(m.name, r.logits);
        const ref = reference.get(m.name);
        if (ref) Object.assign(row, compare(r.logits, ref, m.manifest.labels.length));
      } catch (e) {
        row.error = message(e);
      } finally {
        await s.release();
      }
      say(`${p}: ${m.name}: adaptation step`);
      try {
        const [c] = await measureStepCost(m, ['abl'], [o.batch], { reps: Math.max(3, Math.round(o.reps / 2)), session: { providers: [p], logger: () => {} } });
        row.adaptStepMs = c!.stepMs;
      } catch (e) {
        row.adaptError = message(e);
      }
      checks.push(row);
    }
  }
  const train: ProvidersReport['train'][number][] = [];
  if (o.train) {
    for (const p of order) {
      say(`${p}: training step`);
      try {
        const r = await benchStep({ arch: 'resnet20', batch: 128, steps: 5, providers: [p] });
        train.push({ provider: p, stepMs: r.stepMs, imagesPerSec: (128 * 1000) / r.stepMs });
      } catch (e) {
        train.push({ provider: p, error: message(e) });
      }
    }
  }
  const version = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
  return { onnxruntimeNode: version, platform: `${process.platform}-${process.arch}`, backends, available, skipped, checks, train };
}

const f1 = (x: number | undefined, d = 1): string => (x === undefined ? '–' : x.toFixed(d));

function render(r: ProvidersReport): string {
  const lines = [
    `onnxruntime-node ${r.onnxruntimeNode} on ${r.platform}`,
    `backends registered: ${r.backends.map((b) => `${b.name}${b.bundled ? '' : ' (needs its provider library)'}`).join(', ')}`,
    `available: ${r.available.join(', ')}`,
    ...r.skipped.map((s) => `skipped ${s.provider}: ${s.reason}`),
    '',
    '| provider | model | ran on | inference (ms) | max logit diff vs CPU | top-1 agreement | ABL step (ms) | note |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | --- |',
    ...r.checks.map((c) => `| ${c.provider} | ${c.model} | ${c.ran ?? 'failed'} | ${f1(c.inferMs, 2)} | ${c.maxLogitDiff === undefined ? '–' : c.maxLogitDiff.toExponential(2)} | ${c.top1Agreement === undefined ? '–' : (100 * c.top1Agreement).toFixed(1) + ' %'} | ${f1(c.adaptStepMs, 2)} | ${[c.error, c.adaptError].filter(Boolean).join('; ')} |`),
  ];
  if (r.train.length) {
    lines.push('', '| provider | ResNet-20 training step, batch 128 (ms) | images/s | note |', '| --- | ---: | ---: | --- |');
    for (const t of r.train) lines.push(`| ${t.provider} | ${f1(t.stepMs)} | ${f1(t.imagesPerSec, 0)} | ${t.error ?? ''} |`);
  }
  return lines.join('\n') + '\n';
}

export async function run(argv: string[]): Promise<number> {
  try {
    const f = parseFlags(argv, {
      model: { type: 'string', multiple: true },
      providers: { type: 'string' },
      batch: { type: 'string' },
      reps: { type: 'string' },
      train: { type: 'boolean' },
      json: { type: 'boolean' },
    }, HELP);
    if (!f) return EXIT.ok;
    const flags = f.values;
    const providers = (flags.providers ?? 'tensorrt,cuda,cpu').split(',').map((s) => s.trim()).filter(Boolean) as ProviderName[];
    if (providers.length === 0) throw new TtaqError('CLI_USAGE', '--providers: name at least one provider, e.g. cuda,cpu');
    // a name that no onnxruntime build has is a typo, not a provider this binary lacks
    const known = [...new Set([...PROVIDER_NAMES, ...ort.listSupportedBackends().map((b) => b.name)])];
    const unknown = providers.filter((p) => !known.includes(p));
    if (unknown.length) throw new TtaqError('CLI_USAGE', `--providers: '${unknown.join("', '")}' is no onnxruntime execution provider; use some of ${known.join(', ')}`);
    const report = await checkProviders({
      models: flags.model?.length ? flags.model : [DEFAULT_MODEL_PATH],
      providers,
      batch: intFlag(flags.batch, 'batch', 1) ?? 64,
      reps: intFlag(flags.reps, 'reps', 1) ?? 20,
      train: flags.train ?? false,
      progress: flags.json ? undefined : (l) => process.stderr.write(`${l}\n`),
    });
    if (flags.json) printJson(report);
    else process.stdout.write(render(report));
    const failed = report.checks.some((c) => c.ran === null || c.error || c.adaptError) || report.train.some((t) => t.error);
    return failed ? EXIT.failed : EXIT.ok;
  } catch (e) {
    return reportError(e);
  }
}
