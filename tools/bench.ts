// `ttaq bench`: one harness for the figures the issues name. Each benchmark is an existing bench
// function of its module (imported, not copied) or a short measurement over the SDK, and reports
// its figure as a ratio against a baseline measured in the same run where this machine has one.
// PyTorch figures come from tools/baselines/pytorch_resnet20.py, run in the same process tree
// minutes apart, when a Python with torch is found; otherwise from the issues' constants, labelled.
import { benchStep } from '../sdk/autodiff/bench.ts';
import { agentBenchFigures, benchAgent } from '../device/bench.ts';
import { TtaqError } from '../sdk/errors/index.ts';
import { loadEvalModel, measureStepCost } from '../sdk/eval/index.ts';
import { readManifest, manifestPathFor } from '../sdk/manifest/index.ts';
import { loadModel } from '../sdk/onnx/index.ts';
import { makeTensor } from '../sdk/onnx/tensor.ts';
import type { Model } from '../sdk/onnx/types.ts';
import { chooseWorkers, threadsPerSlice } from '../sdk/autodiff/index.ts';
import { benchReconstruction } from '../sdk/quant/bench.ts';
import { benchStep as benchTrainStep } from '../sdk/train/index.ts';
import { quantize, type QuantReport } from '../sdk/quant/index.ts';
import { createSession } from '../sdk/runtime/index.ts';
import { benchTelemetry } from '../sdk/telemetry/bench.ts';
import { EXIT, parseFlags, printJson } from './lib/cli.ts';
import { measurePytorch, type PytorchBench, type PytorchRow } from './baselines/pytorch.ts';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_MODEL_PATH } from '../sdk/bundled/index.ts';

const TTAQ_BIN = fileURLToPath(new URL('../bin/ttaq.js', import.meta.url));

export const summary = 'benchmarks: training step, quantization, inference widths, adapt-step overhead, agent pipeline, receiver ingest';

/** Reference figures from the issues, used when PyTorch is not measured in this run. */
export const REFERENCES = {
  pytorchTrainImagesPerS: { value: 1200, text: 'PyTorch CPU ResNet-20 training step, batch 128, this 2-core machine (issue figure, not measured here)' },
  trainGoalRatio: 2,
  qdropPytorchSecondsPer1000: { value: 15, text: "QDrop's PyTorch, stride-2 ResNet-20 block, batch 32 (issue figure, not measured here)" },
  quantGoalSecondsPer1000: 7.5,
  adaptGoalRatio: 2.5,
  receiverGoalMsgsPerS: 5000,
} as const;

export interface BenchFigure {
  readonly bench: string;
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** value / baseline (or baseline / value for times, so > 1 is always "better than the baseline" where noted). */
  readonly ratio?: number;
  readonly baseline?: string;
  readonly goal?: string;
  readonly note?: string;
}

interface Ctx {
  readonly model: string; readonly threads: number | undefined; readonly quick: boolean; readonly log: (s: string) => void;
  /** PyTorch's figures for one of its benches, measured now (undefined: not available, reason logged). */
  /** PyTorch's rows for a bench, measured once per run; `fresh` measures them again. */
  readonly pytorch: (bench: PytorchBench, o?: { readonly fresh?: boolean; readonly iterations?: number }) => Promise<readonly PytorchRow[] | undefined>;
}

/** Baseline text for a measured PyTorch row: what it timed, its figure, and how to read the ratio. */
const torchText = (r: PytorchRow, what: string, figure: string, reading = ''): string =>
  `PyTorch ${r.torch} ${what}, ${r.threads} threads, measured in this run: ${figure}${reading ? ` (ratio = ${reading})` : ''}`;
/** `long`: minutes, not seconds; run only when named with --only. */
type Bench = { readonly summary: string; readonly long?: boolean; readonly run: (c: Ctx) => Promise<BenchFigure[]> };

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** Deterministic image-like input of the model's shape at a batch size. */
function input(shape: readonly number[], batch: number) {
  const dims = [batch, ...shape.slice(1).map((d) => (d > 0 ? d : 1))];
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.sin(i * 0.37) * 1.5;
  return makeTensor('float32', dims, data);
}

async function timeInference(model: Model | Uint8Array, inputName: string, shape: readonly number[], batch: number, threads: number | undefined, reps: number): Promise<number> {
  const s = await createSession(model, { providers: ['cpu'], ...(threads ? { intraOpThreads: threads } : {}) });
  try {
    const x = input(shape, batch);
    for (let i = 0; i < 3; i++) await s.run({ [inputName]: x });
    const ts: number[] = [];
    for (let i = 0; i < reps; i++) { const t = performance.now(); await s.run({ [inputName]: x }); ts.push(performance.now() - t); }
    return median(ts);
  } finally {
    await s.release();
  }
}

export const BENCHES: Readonly<Record<string, Bench>> = {
  train: {
    summary: 'ResNet-20 training step (sdk/autodiff bench), images/s vs PyTorch measured in this run (else the issue constant)',
    run: async (c) => {
      const batch = c.quick ? 16 : 128;
      const slices = chooseWorkers('auto', batch);
      const r = await benchStep({ arch: 'resnet20', batch, steps: c.quick ? 3 : 5 });
      const ips = (1000 * batch) / r.stepMs;
      const pt = (await c.pytorch('train'))?.find((x) => x.batch === batch && x.imagesPerSec);
      const base = pt
        ? { ips: pt.imagesPerSec!, text: torchText(pt, `training step, batch ${batch}`, `${pt.imagesPerSec!.toFixed(0)} images/s`) }
        : { ips: REFERENCES.pytorchTrainImagesPerS.value, text: REFERENCES.pytorchTrainImagesPerS.text };
      return [
        { bench: 'train', name: `training step, batch ${batch}`, value: ips, unit: 'images/s', ratio: ips / base.ips, baseline: base.text, goal: `>= ${REFERENCES.trainGoalRatio}x` },
        { bench: 'train', name: 'step time outside Session.run', value: 100 * r.outsideShare, unit: '%' },
        ...(slices > 1 ? [await (async () => {
          // `ttaq train --workers 2`: the batch in slices on both cores (BN statistics per slice)
          const d = await benchTrainStep({ arch: 'resnet20', batch, steps: c.quick ? 3 : 5, workers: slices, session: { intraOpThreads: 1 } });
          return { bench: 'train', name: `training step, batch ${batch}, ${slices} slices (ttaq train --workers ${slices})`, value: d.imagesPerSec, unit: 'images/s', ratio: d.imagesPerSec / base.ips, baseline: base.text, goal: `>= ${REFERENCES.trainGoalRatio}x` } satisfies BenchFigure;
        })()] : []),
      ];
    },
  },
  quant: {
    summary: 'seconds per 1,000 reconstruction iterations of layer2.0 at batch 32 (sdk/quant bench): QDrop and TTAQ, one session and data-parallel slices, vs the same step in PyTorch (measured before and after ours, averaged)',
    run: async (c) => {
      const slices = chooseWorkers('auto', 32);
      // PyTorch runs before and after ours and the ratio uses the mean of the two: on a shared
      // machine the load changes within a minute, and one PyTorch figure moved 12.7-16.8 s between runs
      const before = await c.pytorch('recon');
      const ours: { workers: number; rows: Awaited<ReturnType<typeof benchReconstruction>> }[] = [];
      for (const workers of slices > 1 ? [1, slices] : [1]) {
        // slices get the threads `ttaq quantize` gives them (one core each), not one per core each
        const threads = c.threads ?? (workers > 1 ? threadsPerSlice(workers) : undefined);
        ours.push({ workers, rows: await benchReconstruction({ iterations: c.quick ? 20 : 100, workers, ...(threads ? { threads } : {}) }) });
      }
      const after = before ? await c.pytorch('recon', { fresh: true }) : undefined;
      const out: BenchFigure[] = [];
      for (const { workers, rows } of ours) {
        const qdrop = rows.find((r) => r.variant === 'qdrop');
        out.push(...rows.map((r) => {
          const pick = (pts: typeof before) => pts?.find((x) => x.variant === r.variant && x.secondsPer1000);
          const [pb, pa] = [pick(before), pick(after)];
          const pt = pb ?? pa;
          const s = pb && pa ? (pb.secondsPer1000! + pa.secondsPer1000!) / 2 : pt?.secondsPer1000;
          const base = pt && s
            ? { s, text: torchText(pt, `${r.variant} step re-implemented (tools/baselines)`, pb && pa ? `${pb.secondsPer1000!.toFixed(1)} s before ours, ${pa.secondsPer1000!.toFixed(1)} s after, mean ${s.toFixed(1)} s` : `${s.toFixed(1)} s`, 'speed-up against the mean') }
            : r.variant === 'qdrop' ? { s: REFERENCES.qdropPytorchSecondsPer1000.value, text: `${REFERENCES.qdropPytorchSecondsPer1000.text} (ratio = speed-up)` } : undefined;
          return {
            // the median iteration, as PyTorch's figure (median of steps after warm-up); the mean
            // over every timed iteration, first runs included, goes in the note
            bench: 'quant', name: `${r.variant} reconstruction, ${workers === 1 ? 'one session' : `${workers} slices (\`ttaq quantize\`'s default here)`} (median of ${r.iterations} iterations)`,
            value: r.medianSecondsPer1000, unit: 's / 1,000 it',
            ...(base ? { ratio: base.s / r.medianSecondsPer1000, baseline: base.text } : {}),
            goal: `>= 2x PyTorch; < ${REFERENCES.quantGoalSecondsPer1000} s (issue)`,
            note: `mean over all ${r.iterations} iterations, the first ones included, ${r.secondsPer1000.toFixed(1)} s; process CPU ${r.cpuSecondsPer1000.toFixed(1)} s / 1,000 it (wall time is unreliable on a loaded machine)${qdrop && r !== qdrop ? `; ${(r.medianSecondsPer1000 / qdrop.medianSecondsPer1000).toFixed(2)}x the QDrop time measured in this run (PEM + PCR cost)` : ''}`,
          } satisfies BenchFigure;
        }));
      }
      return out;
    },
  },
  'quant-net': {
    long: true,
    summary: 'the whole `ttaq quantize` command, W4A4 qdrop, default preset (2,000 iterations per block; --quick: fast, 500), on the bundled ResNet-20, vs the whole network\'s reconstruction in PyTorch at equal iterations (before and after ours, averaged); about 15 minutes here',
    run: async (c) => {
      const preset = c.quick ? 'fast' : 'default';
      const iterations = c.quick ? 500 : 2000;
      const before = await c.pytorch('recon-net', { iterations });
      const ours = await timeQuantizeCommand(c.model, preset, c.threads);
      const after = before ? await c.pytorch('recon-net', { fresh: true, iterations }) : undefined;
      // PyTorch's runs (before and after ours, or the one that ran) and their mean, whole and per block
      const runs = [before?.[0], after?.[0]].filter((r): r is PytorchRow => r?.seconds !== undefined);
      const mean = (f: (r: PytorchRow) => number | undefined): number | undefined => {
        const xs = runs.map(f).filter((x): x is number => x !== undefined);
        return xs.length ? xs.reduce((a, x) => a + x, 0) / xs.length : undefined;
      };
      const torchSeconds = mean((r) => r.seconds);
      const pt = runs[0];
      const torchFigure = runs.length === 2 ? `${runs[0]!.seconds!.toFixed(0)} s before ours, ${runs[1]!.seconds!.toFixed(0)} s after, mean ${torchSeconds!.toFixed(0)} s` : `${torchSeconds?.toFixed(0)} s`;
      const perBlock = ours.blocks.map((b) => {
        const t = mean((r) => r.blocks?.find((x) => x.block === b.block)?.seconds);
        return `${b.block}${b.slices > 1 ? ` (${b.slices} slices)` : ''} ${t ? `${(t / b.seconds).toFixed(2)}x` : '-'}`;
      }).join(', ');
      const base = pt && torchSeconds ? torchText(pt, `reconstruction of the whole network re-implemented (tools/baselines recon-net), ${iterations} iterations per block`, torchFigure, 'PyTorch time / ours') : undefined;
      return [
        {
          bench: 'quant-net', name: `ttaq quantize W4A4 qdrop, ${preset} preset, whole command`, value: ours.wallSeconds, unit: 's',
          ...(torchSeconds && base ? { ratio: torchSeconds / ours.wallSeconds, baseline: `${base}; PyTorch's figure is reconstruction alone, ours includes loading, calibration, export and the report` } : {}),
          goal: c.quick ? undefined : '<= 180 s; >= 2x the official QDrop code (368 s of reconstruction, issue)',
          note: `${Object.entries(ours.stages).map(([k, v]) => `${k} ${v.toFixed(1)} s`).join(', ')}${ours.accuracy ? `; clean accuracy FP32 ${(100 * ours.accuracy.fp32).toFixed(2)} % -> ${(100 * ours.accuracy.quantized).toFixed(2)} % on ${ours.accuracy.images} test images` : ''}`,
        },
        {
          bench: 'quant-net', name: `reconstruction alone (${ours.blocks.length} blocks)`, value: ours.stages.reconstruct ?? NaN, unit: 's',
          ...(torchSeconds && base ? { ratio: torchSeconds / ours.stages.reconstruct!, baseline: base, note: `per block, PyTorch / ours: ${perBlock}` } : {}),
        },
      ] satisfies BenchFigure[];
    },
  },
  infer: {
    summary: 'inference ms/batch: FP32 vs W4A4 INT8-container vs W4A4 true-width (minmax-quantized bundled model)',
    run: async (c) => {
      const fp32 = await loadModel(c.model);
      const manifest = await readManifest(manifestPathFor(c.model));
      const shape = manifest.input.shape;
      const calibN = 32;
      const calib = input(shape, calibN);
      c.log('quantizing the model with minmax W4A4 for the inference variants');
      const q = await quantize({ model: fp32, calib: { images: calib.data as Float32Array, dims: calib.dims }, options: { wBits: 4, aBits: 4, method: 'minmax' } });
      const out: BenchFigure[] = [];
      const pts = await c.pytorch('infer');
      for (const batch of c.quick ? [1, 8] : [1, 8, 64]) {
        const reps = Math.max(5, Math.min(50, Math.round(800 / batch)));
        const base = await timeInference(fp32, manifest.input.name, shape, batch, c.threads, reps);
        const pt = pts?.find((x) => x.batch === batch && x.msPerBatch);
        out.push({
          bench: 'infer', name: `FP32, batch ${batch}`, value: base, unit: 'ms/batch',
          ...(pt ? { ratio: pt.msPerBatch! / base, baseline: torchText(pt, `FP32 inference, batch ${batch}`, `${pt.msPerBatch!.toFixed(1)} ms`, 'speed-up'), goal: '>= 2x' } : {}),
        });
        for (const [name, m] of [['INT8-container', q.int8Model], ['true-width', q.model]] as const) {
          const ms = await timeInference(m, manifest.input.name, shape, batch, c.threads, reps);
          out.push({ bench: 'infer', name: `W4A4 ${name}, batch ${batch}`, value: ms, unit: 'ms/batch', ratio: ms / base, baseline: `FP32 at batch ${batch}, this run (ratio = time / FP32 time)` });
        }
      }
      return out;
    },
  },
  adapt: {
    summary: 'adaptation step time over inference time at batch 1/8/64 (sdk/eval measureStepCost, ABL robust)',
    run: async (c) => {
      const m = await loadEvalModel(c.model);
      const batches = c.quick ? [1, 8] : [1, 8, 64];
      const opts = { ...(c.quick ? { reps: 3 } : {}), ...(c.threads ? { session: { intraOpThreads: c.threads } } : {}) };
      const rows = await measureStepCost(m, ['abl:robust'], batches, opts);
      const out: BenchFigure[] = rows.map((r) => ({
        bench: 'adapt', name: `${r.method} step, batch ${r.batch}`, value: r.stepMs, unit: 'ms/batch', ratio: r.stepOverInfer,
        baseline: `adapter inference (same normalisation) ${r.inferMs.toFixed(1)} ms, this run; source model ${r.sourceMs.toFixed(1)} ms (ratio = step / inference)`,
        goal: `<= ${REFERENCES.adaptGoalRatio}x`,
      }));
      // TENT against PyTorch's TENT step (the issue's speed goal is at batch 64)
      const pts = await c.pytorch('tent');
      for (const r of await measureStepCost(m, ['tent'], batches, opts)) {
        const pt = pts?.find((x) => x.batch === r.batch && x.msPerStep);
        out.push({
          bench: 'adapt', name: `tent step, batch ${r.batch}`, value: r.stepMs, unit: 'ms/batch',
          ...(pt ? { ratio: pt.msPerStep! / r.stepMs, baseline: torchText(pt, `TENT step, batch ${r.batch}`, `${pt.msPerStep!.toFixed(1)} ms`, 'speed-up'), goal: '>= 2x' } : {}),
          note: `step / inference ${r.stepOverInfer.toFixed(2)}`,
        });
      }
      return out;
    },
  },
  agent: {
    summary: 'agent pipeline (decode, preprocess, batch, infer, log) frames/s and latency vs the same runner alone at the same batch, steady state',
    run: async (c) => agentBenchFigures(await benchAgent({
      model: c.model, reps: c.quick ? 1 : 3, ...(c.threads ? { threads: c.threads } : {}),
      ...(c.quick ? { frames: 400, warmupFrames: 160 } : {}), log: c.log,
    })),
  },
  receiver: {
    summary: 'receiver ingest into SQLite through the embedded broker and the outbox cost (sdk/telemetry bench)',
    run: async (c) => {
      const r = await benchTelemetry({ messages: c.quick ? 2000 : 20000 });
      return [
        { bench: 'receiver', name: `receiver end to end (${r.receiver.devices} devices, ${r.receiver.messages} msgs)`, value: r.receiver.msgsPerS, unit: 'msgs/s', ratio: r.receiver.msgsPerS / REFERENCES.receiverGoalMsgsPerS, baseline: `the goal ${REFERENCES.receiverGoalMsgsPerS} msgs/s (not a measurement)`, goal: `>= ${REFERENCES.receiverGoalMsgsPerS}` },
        { bench: 'receiver', name: 'store, batches of 64 per commit', value: r.store.msgsPerS, unit: 'msgs/s', ratio: r.store.msgsPerS / r.store.perMessageCommitMsgsPerS, baseline: `one commit per message, this run: ${r.store.perMessageCommitMsgsPerS.toFixed(0)} msgs/s` },
        { bench: 'receiver', name: 'agent outbox append + ack', value: r.outbox.appendAckUs, unit: 'us/msg', ratio: r.outbox.appendAckUs / r.outbox.appendAckFullSyncUs, baseline: `synchronous=FULL, this run: ${r.outbox.appendAckFullSyncUs.toFixed(0)} us (ratio = time / FULL time)` },
      ];
    },
  },
};

const help = `usage: ttaq bench [--only name[,name]] [--quick] [--json] [--model models/resnet20-fmnist.onnx] [--threads N]

Prints each figure with its ratio against a baseline measured in the same run. PyTorch's figures
come from tools/baselines/pytorch_resnet20.py, run by $TTAQ_PYTORCH_PYTHON (default python3) when
it can import torch; otherwise the issues' constants stand in and the baseline column says so.

benchmarks:
${Object.entries(BENCHES).map(([k, b]) => `  ${k.padEnd(9)} ${b.long ? '(only with --only) ' : ''}${b.summary}`).join('\n')}

  --only LIST   run only these (comma-separated)
  --quick       fewer iterations (a smoke run; the figures are noisier)
  --model PATH  FP32 model for infer/adapt/agent (default: the bundled models/resnet20-fmnist.onnx)
  --threads N   onnxruntime intra-op threads (default: one per core); PyTorch gets the same
  --no-pytorch  skip the PyTorch baselines (use the issues' constants)
  --json        print the figures as JSON
Exit codes: 0 ok, 1 a benchmark failed, 2 bad usage.`;

/** Runs `ttaq quantize` as a user would (a child process, its progress on stderr) and times it. */
async function timeQuantizeCommand(model: string, preset: string, threads: number | undefined): Promise<{
  wallSeconds: number; stages: Record<string, number>; accuracy: QuantReport['accuracy']; blocks: readonly { block: string; seconds: number; slices: number }[];
}> {
  const dir = await mkdtemp(join(tmpdir(), 'ttaq-bench-'));
  try {
    const args = [TTAQ_BIN, 'quantize', '--model', model, '--calib', 'fashion-mnist', '--eval', 'fashion-mnist:test', '--w-bits', '4', '--a-bits', '4',
      '--method', 'qdrop', '--preset', preset, '--out', join(dir, 'q.onnx'), '--no-state', '--json', ...(threads ? ['--threads', String(threads)] : [])];
    const t = performance.now();
    const stdout = await new Promise<string>((resolve, reject) => {
      const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => { out += d; });
      p.on('error', reject);
      p.on('close', (code) => (code === 0 ? resolve(out) : reject(new TtaqError('BENCH_FAILED', `ttaq quantize exited with ${code}: see its messages above`))));
    });
    const wallSeconds = (performance.now() - t) / 1000;
    const report = (JSON.parse(stdout) as { report: QuantReport }).report;
    return { wallSeconds, stages: { ...report.seconds }, accuracy: report.accuracy, blocks: report.blocks.map((b) => ({ block: b.block, seconds: b.seconds, slices: b.slices })) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A figure's baseline and note cell: the two joined by '; ', either alone, or empty; never a bare separator. */
export function figureNotes(r: Pick<BenchFigure, 'baseline' | 'note'>): string {
  return [r.baseline, r.note].map((s) => s?.trim()).filter((s): s is string => !!s).join('; ');
}

export function figuresTable(rows: readonly BenchFigure[]): string {
  const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));
  const lines = ['| bench | figure | value | ratio | baseline | goal |', '| --- | --- | --- | --- | --- | --- |'];
  for (const r of rows) lines.push(`| ${r.bench} | ${r.name} | ${fmt(r.value)} ${r.unit} | ${r.ratio !== undefined ? fmt(r.ratio) + 'x' : ''} | ${figureNotes(r)} | ${r.goal ?? ''} |`);
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, {
    only: { type: 'string' }, quick: { type: 'boolean', default: false }, json: { type: 'boolean', default: false },
    model: { type: 'string', default: DEFAULT_MODEL_PATH }, threads: { type: 'string' },
    'no-pytorch': { type: 'boolean', default: false },
  }, help);
  if (!f) return EXIT.ok;
  const v = f.values;
  const names = v.only ? v.only.split(',').map((s) => s.trim()).filter(Boolean) : Object.keys(BENCHES).filter((k) => !BENCHES[k]!.long);
  for (const n of names) if (!BENCHES[n]) throw new TtaqError('CLI_USAGE', `--only ${n}: no such benchmark; use one of ${Object.keys(BENCHES).join(', ')}`);
  const threads = v.threads !== undefined ? Number(v.threads) : undefined;
  if (threads !== undefined && !(Number.isInteger(threads) && threads > 0)) throw new TtaqError('CLI_USAGE', `--threads ${v.threads}: give a positive whole number`);
  const log = (s: string) => process.stderr.write(`ttaq bench: ${s}\n`);
  const baselines = new Map<PytorchBench, Promise<readonly PytorchRow[] | undefined>>();
  let noTorch: string | undefined = v['no-pytorch'] ? 'skipped (--no-pytorch)' : undefined;
  const pytorch = (b: PytorchBench, o: { readonly fresh?: boolean; readonly iterations?: number } = {}): Promise<readonly PytorchRow[] | undefined> => {
    if (noTorch) return Promise.resolve(undefined);
    let p = o.fresh ? undefined : baselines.get(b);
    if (!p) {
      log(`PyTorch baseline: ${b}`);
      p = measurePytorch([b], { threads: threads ?? availableParallelism(), ...(v.quick ? { reps: 3 } : {}), ...(o.iterations ? { iterations: o.iterations } : {}), onProgress: (l) => log(`PyTorch baseline: ${l}`) }).then((r) => {
        if (r.ok) return r.value;
        noTorch = r.error; // one reason, logged once; the other benches use the constants too
        log(`${r.error}; using the issues' reference constants`);
        return undefined;
      });
      baselines.set(b, p);
    }
    return p;
  };
  const ctx: Ctx = { model: v.model!, threads, quick: v.quick!, log, pytorch };
  const rows: BenchFigure[] = [];
  const failed: { bench: string; error: string }[] = [];
  for (const n of names) {
    ctx.log(`${n}: ${BENCHES[n]!.summary}`);
    const t = performance.now();
    try {
      const r = await BENCHES[n]!.run(ctx);
      rows.push(...r);
      ctx.log(`${n}: done in ${((performance.now() - t) / 1000).toFixed(0)} s`);
    } catch (e) {
      // one failing benchmark does not hide the others' figures
      failed.push({ bench: n, error: (e as Error).message });
      ctx.log(`${n}: FAILED: ${(e as Error).message}`);
    }
  }
  if (v.json) printJson({ figures: rows, failed, references: REFERENCES, quick: v.quick, ...(noTorch ? { pytorch: noTorch } : {}) });
  else process.stdout.write(figuresTable(rows) + '\n' + (noTorch ? `\nPyTorch baselines: ${noTorch}\n` : '') + (failed.length ? `\nfailed: ${failed.map((x) => x.bench).join(', ')}\n` : ''));
  return failed.length ? EXIT.failed : EXIT.ok;
}
