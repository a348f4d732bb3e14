// `ttaq quantize`: FP32 model + calibration images -> low-bit QDQ model (true-width and int8-container
// variants), each with its manifest, and a report (per-layer SQNR, size, accuracy, time per block).
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { TtaqError } from '../sdk/errors/index.ts';
import { classFolders, matchClassFolders, readImageFolder, readUnlabelledImages } from '../sdk/data/index.ts';
import { readFashionMnist, readIdxDir } from '../sdk/data/idx.ts';
import type { Dataset } from '../sdk/data/dataset.ts';
import type { Model } from '../sdk/onnx/types.ts';
import { preprocessBatch } from '../sdk/data/preprocess.ts';
import { ManifestSchema, manifestPathFor, readManifest, sha256Hex, type Manifest } from '../sdk/manifest/index.ts';
import { acquireLock, writeFileAtomic } from '../sdk/files/index.ts';
import { encodeModel } from '../sdk/onnx/codec.ts';
import { loadModel } from '../sdk/onnx/io.ts';
import { readFile } from 'node:fs/promises';
import { checkActBits, checkWeightBits, parseQuantizeOptions, quantize, resolveMethod, METHODS, TTAQ_TERMS, type CalibSet, type QuantizeOptionsInput, type QuantReport } from '../sdk/quant/index.ts';
import { EXIT, intFlag, parseFlags, prepareOutputFile, printJson } from './lib/cli.ts';
import { progressPrinter } from './lib/progress.ts';

export const summary = 'quantize an FP32 model to W2/3/4/8 A2/3/4/8 with block reconstruction, PEM and PCR';

const HELP = `usage: ttaq quantize --model in.onnx --calib <dataset> --w-bits 2|3|4|8 --a-bits 2|3|4|8 --out out.onnx [options]

  --model PATH        FP32 ONNX model; its manifest (<model>.manifest.json) gives preprocessing and labels
  --calib DATASET     calibration images: fashion-mnist[:train|test], <idx-dir>[:split], or an image folder
                      (one sub-folder per class, or the images themselves, unlabelled); a folder's
                      images may have any sizes: each is resized to the model's input as its
                      manifest's preprocessing resizes camera frames (a note says how many)
  --eval DATASET      labelled images for the accuracy report (default: none; the calibration images
                      are used when they carry labels). An image folder's class sub-folders are
                      matched to the model's labels by name ('/' written as '_'), by number (0, 1,
                      ...), or in sorted order when there are as many; otherwise --eval is refused
                      and --calib's labels are not used
  --eval-limit N      at most N evaluation images (default all)
  --variant-images N  compare the true-width and INT8-container exports on the first N evaluation
                      images, or 'all' (default 1000; 0 skips the comparison)
  --w-bits B          weight bits: 2, 3, 4 or 8
  --a-bits B          activation bits: 2, 3, 4 or 8 (3-bit activations are stored in 4-bit
                      containers clipped to 8 levels)
  --method M          ${METHODS.join(' | ')} (default ttaq)
  --preset P          fast | default | paper: ~500 / 2,000 / 20,000 iterations per block (default default)
  --iterations N      iterations per block (overrides --preset)
  --pem W             PEM weight (default ${TTAQ_TERMS.pem} for ttaq, 0 otherwise; 0 disables)
  --pcr W             PCR weight (default ${TTAQ_TERMS.pcr} for ttaq, 0 otherwise; 0 disables)
  --calib-images N    calibration images used (default 1024). A model whose fixed batch size
                      cannot be freed (calibration methods only) pads a last partial batch; if its
                      images mix within a batch, the counts must be whole batches instead
  --min-calib N       fewest calibration images accepted (default 32)
  --first-last B      bits of the first and last weighted layers (default 8; 'same' = --w-bits/--a-bits)
  --override SPEC     per-node widths: <name-or-regex>=w<B>a<B> | <name-or-regex>=skip (repeatable)
  --act-calib C       minmax | percentile | mse (default mse; minmax for --method minmax)
  --bias-correction   fold (W - Wq) E[x] into the biases
  --batch N           reconstruction batch (default 32)
  --step-owner O      producer | consumer: the block that learns the step of a quantizer between
                      two blocks, the one whose output it quantizes (default, as QDrop) or the one
                      it feeds (the earlier behaviour; one more convolution per step)
  --seed N            random seed (default 0)
  --state PATH        resume file: finished blocks are kept and skipped on a rerun with the same
                      model, options and calibration images (default <out>.state.json)
  --no-state          do not write a resume file
  --threads N         onnxruntime threads per operator (per slice with --workers)
  --workers N|auto    reconstruction steps in N batch slices at once, one per thread
                      (default auto: one per core, at most 2, for blocks whose output has at
                      least 4,096 values per sample, one session with all cores for smaller ones;
                      1 = a single session)
  --spinning          let onnxruntime's threads spin between ops: measure first; it was faster
                      on one idle host and slower on shared or virtual cores (default: they sleep)
  --out PATH          output model (true width); <out>.int8.onnx gets the int8-container variant.
                      Neither may be the input model; one run at a time writes an --out (<out>.lock)
  --json              print the report as JSON
  --quiet             no progress output
`;

function parseDatasetArg(spec: string): { kind: 'fmnist' | 'idx' | 'folder'; path: string; split: string } {
  // a folder whose own name has a ':' is that folder, not a folder and a split
  const m = existsSync(spec) ? [spec, spec, undefined] : /^(.*?)(?::([A-Za-z0-9_.-]+))?$/.exec(spec)!;
  const path = m[1]!;
  const split = m[2] ?? '';
  if (path === 'fashion-mnist' || path === 'fmnist') {
    // any other split read the training images under the name of the one asked for
    if (split && split !== 'train' && split !== 'test') throw new TtaqError('DATA_BAD_SPEC', `dataset '${spec}': Fashion-MNIST has the splits 'train' and 'test', not '${split}'`);
    return { kind: 'fmnist', path, split: split || 'train' };
  }
  if (!existsSync(path)) throw new TtaqError('DATA_NOT_FOUND', `dataset '${spec}' not found; pass fashion-mnist[:train|test], an IDX folder[:split] or an image folder`);
  if (!statSync(path).isDirectory()) throw new TtaqError('DATA_BAD_SPEC', `dataset '${spec}' is a file; pass the folder that holds the IDX files or the class sub-folders`);
  const hasIdx = readdirSync(path).some((f) => /-images-idx[34]-ubyte/.test(f));
  if (!hasIdx && split) throw new TtaqError('DATA_BAD_SPEC', `dataset '${spec}': an image folder has no splits; pass the folder itself (${path}/${split} if that is the split's folder)`);
  return { kind: hasIdx ? 'idx' : 'folder', path, split: split || 'train' };
}

/** A path as the file system resolves it (symbolic links followed), for comparing outputs with inputs. */
function canonical(p: string): string {
  const abs = resolve(p);
  if (existsSync(abs)) return realpathSync(abs);
  const dir = dirname(abs);
  return join(existsSync(dir) ? realpathSync(dir) : dir, basename(abs));
}

/** The command-line flag of each quantize option, for messages about them. */
const FLAG_OF: Readonly<Record<string, string>> = {
  wBits: '--w-bits', aBits: '--a-bits', method: '--method', preset: '--preset', calibImages: '--calib-images', seed: '--seed',
  iterations: '--iterations', pem: '--pem', pcr: '--pcr', minCalibImages: '--min-calib', firstLastBits: '--first-last',
  overrides: '--override', actCalib: '--act-calib', batch: '--batch', stepOwner: '--step-owner', variantImages: '--variant-images',
  intraOpThreads: '--threads', workers: '--workers', statePath: '--state',
};

/** The options checked by the quantizer's own schema, before any data loads, named by their flags. */
function checkOptions(o: QuantizeOptionsInput): void {
  try {
    // the method's own rules too (PEM and PCR only where there is reconstruction)
    resolveMethod(parseQuantizeOptions(o));
  } catch (e) {
    const path = (e as { details?: { path?: PropertyKey[] } }).details?.path;
    const key = String(path?.[0] ?? '');
    const flag = FLAG_OF[key];
    if (!flag) throw e;
    const what = (e as Error).message.replace(/^[^']*'[^']*' /, '');
    throw new TtaqError('CLI_USAGE', `${flag}: ${what}`, { flag }, { cause: e });
  }
}

/**
 * Reads `--calib` or `--eval`. An image folder's classes are matched to the model's labels
 * (matchClassFolders): by name or number, or in sorted order when there are as many; otherwise the
 * evaluation set is refused and the calibration set is read without labels (they would score the
 * model against the wrong classes), with a note. A folder's images may have several sizes: each is
 * brought to the model's input size as the manifest's preprocessing resizes a camera frame on the
 * device (`fit`), with a note of how many were resized.
 */
async function readDataset(spec: string, role: '--calib' | '--eval', m: Manifest, note: (line: string) => void): Promise<{ data: Dataset; labelled: boolean }> {
  const d = parseDatasetArg(spec);
  if (d.kind === 'fmnist') return { data: await readFashionMnist(d.split === 'test' ? 'test' : 'train'), labelled: true };
  if (d.kind === 'idx') return { data: await readIdxDir(d.path, d.split), labelled: true };
  const labels = m.labels;
  const fit = { fit: m.preprocess, onNote: (line: string) => note(`${role} ${spec}: ${line}`) };
  const folders = classFolders(d.path);
  if (folders.length === 0) {
    // a flat folder of images (frames from the camera): calibration data without labels
    if (role === '--eval') throw new TtaqError('DATA_BAD_FORMAT', `${role} ${spec}: the folder has no class sub-folders, so its images have no labels to score; put each class's images in ${d.path}/<label>/`);
    return { data: await readUnlabelledImages(d.path, fit), labelled: false };
  }
  const match = matchClassFolders(folders, labels);
  if (match.kind === 'names' || match.kind === 'order') {
    if (match.note) note(`${role} ${spec}: ${match.note}`);
    return { data: await readImageFolder(d.path, { classes: match.classes, ...fit }), labelled: true };
  }
  if (role === '--eval') throw new TtaqError('DATA_BAD_FORMAT', `${role} ${spec}: ${match.reason}; name its sub-folders after the labels in the model's manifest to measure accuracy`);
  note(`${role} ${spec}: ${match.reason}; its images calibrate, its labels are not used (no accuracy from them)`);
  return { data: await readImageFolder(d.path, fit), labelled: false };
}

/** A seeded random subset of `n` images, preprocessed for the model. */
function toCalibSet({ data: d, labelled }: { data: Dataset; labelled: boolean }, m: Manifest, n: number, seed: number): CalibSet {
  const count = Math.min(n, d.count);
  const idx = Int32Array.from({ length: d.count }, (_, i) => i);
  let s = (seed * 2654435761 + 1) >>> 0;
  for (let i = d.count - 1; i > 0; i--) {
    s = (Math.imul(s ^ (s >>> 15), 2246822507) + 0x9e3779b9) >>> 0;
    const j = s % (i + 1);
    const t = idx[i]!; idx[i] = idx[j]!; idx[j] = t;
  }
  const per = d.height * d.width * d.channels;
  const images = new Uint8Array(count * per);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    images.set(d.images.subarray(idx[i]! * per, (idx[i]! + 1) * per), i * per);
    labels[i] = Number(d.labels[idx[i]!]);
  }
  const t = preprocessBatch({ count, height: d.height, width: d.width, channels: d.channels, images } as never, m.preprocess);
  return { images: t.data, dims: t.dims, ...(labelled ? { labels } : {}) };
}

/** PEM/PCR weights in the model name where they differ from the method's own (ttaq: TTAQ_TERMS; others: 0), so ablation rows tell apart. */
function termSuffix(o: { method: string; pem?: number | undefined; pcr?: number | undefined }): string {
  const d = o.method === 'ttaq' ? TTAQ_TERMS : { pem: 0, pcr: 0 };
  const [pem, pcr] = [o.pem ?? d.pem, o.pcr ?? d.pcr];
  return `${pem !== d.pem ? `-pem${pem}` : ''}${pcr !== d.pcr ? `-pcr${pcr}` : ''}`;
}

function parseOverride(s: string): { match: string; wBits?: number; aBits?: number; skip?: boolean } {
  const eq = s.lastIndexOf('=');
  if (eq <= 0) throw new TtaqError('CLI_USAGE', `--override '${s}': expected <name-or-regex>=w<B>a<B> or <name-or-regex>=skip`);
  const match = s.slice(0, eq);
  const rhs = s.slice(eq + 1);
  if (rhs === 'skip') return { match, skip: true };
  const m = /^(?:w(\d+))?(?:a(\d+))?$/.exec(rhs);
  if (!m || (!m[1] && !m[2])) throw new TtaqError('CLI_USAGE', `--override '${s}': '${rhs}' should look like w4a8, w2 or a8`);
  return { match, ...(m[1] ? { wBits: Number(m[1]) } : {}), ...(m[2] ? { aBits: Number(m[2]) } : {}) };
}

const num = (v: string | undefined, flag: string): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new TtaqError('CLI_USAGE', `${flag} '${v}' is not a number`);
  return n;
};

/**
 * The reconstruction line of the report. The iteration count says where it came from: --iterations
 * when the flag was given (even at the preset's own count), else the preset.
 */
export function reconstructionLine(rec: NonNullable<QuantReport['reconstruction']>, iterationsFlag: boolean): string {
  const iterations = `${rec.iterationsPerBlock} iterations per block (${iterationsFlag ? '--iterations' : `${rec.preset} preset`})`;
  return `reconstruction: ${iterations}, PEM ${rec.pem}, PCR ${rec.pcr}, ${rec.slices === 1 ? 'one session' : `up to ${rec.slices} slices per step`}`;
}

function printReport(r: QuantReport, out: string, iterationsFlag: boolean): void {
  const w = (s: string) => process.stdout.write(s + '\n');
  w(`quantized ${r.method} W${r.weightBits}A${r.activationBits} -> ${out}`);
  if (r.reconstruction) w(reconstructionLine(r.reconstruction, iterationsFlag));
  if (r.accuracy) w(`accuracy on ${r.accuracy.images} ${r.accuracy.source}: FP32 ${(r.accuracy.fp32 * 100).toFixed(2)}%  quantized ${(r.accuracy.quantized * 100).toFixed(2)}%  (drop ${((r.accuracy.fp32 - r.accuracy.quantized) * 100).toFixed(2)} pt)`);
  if (r.variants) w(`true-width vs INT8-container on ${r.variants.images === r.accuracy?.images ? 'all' : 'the first'} ${r.variants.images} of those images: ${r.variants.samePredictions}/${r.variants.images} equal predictions, max logit difference ${r.variants.maxLogitDiff.toExponential(2)}`);
  w(`size: FP32 ${(r.size.fp32Bytes / 1024).toFixed(1)} KiB -> ${(r.size.quantizedBytes / 1024).toFixed(1)} KiB  (${Object.entries(r.size.weightsByDType).map(([k, v]) => `${k} ${(v / 1024).toFixed(1)} KiB`).join(', ')})`);
  if (r.outputSqnrDb !== null) w(`output SQNR ${r.outputSqnrDb.toFixed(2)} dB`);
  w('layer                              W  A   SQNR dB');
  for (const l of r.layers) w(`${l.node.padEnd(34)} ${String(l.weightBits).padStart(1)}  ${String(l.activationBits ?? '-').padStart(1)}  ${l.sqnrDb.toFixed(2).padStart(7)}`);
  if (r.blocks.length) {
    w('block                 seconds  slices   mse(nearest)  mse(after)');
    for (const b of r.blocks) w(`${b.block.padEnd(20)} ${b.seconds.toFixed(1).padStart(8)}  ${String(b.slices ?? '-').padStart(6)}   ${b.mseBefore.toExponential(3).padStart(11)}  ${b.mseAfter.toExponential(3).padStart(10)}`);
  }
  w(`time: ${Object.entries(r.seconds).map(([k, v]) => `${k} ${v.toFixed(1)}s`).join(', ')}`);
}

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, {
    model: { type: 'string' }, calib: { type: 'string' }, eval: { type: 'string' }, 'eval-limit': { type: 'string' }, 'variant-images': { type: 'string' },
    'w-bits': { type: 'string' }, 'a-bits': { type: 'string' }, method: { type: 'string' }, preset: { type: 'string' },
    iterations: { type: 'string' }, pem: { type: 'string' }, pcr: { type: 'string' }, 'calib-images': { type: 'string' },
    'min-calib': { type: 'string' }, 'first-last': { type: 'string' }, override: { type: 'string', multiple: true },
    'act-calib': { type: 'string' }, 'bias-correction': { type: 'boolean' }, batch: { type: 'string' }, seed: { type: 'string' },
    state: { type: 'string' }, 'no-state': { type: 'boolean' }, threads: { type: 'string' }, workers: { type: 'string' }, 'step-owner': { type: 'string' }, spinning: { type: 'boolean' }, out: { type: 'string' },
    json: { type: 'boolean' }, quiet: { type: 'boolean' },
  }, HELP);
  if (!f) return EXIT.ok;
  const v = f.values;
  for (const k of ['model', 'calib', 'w-bits', 'a-bits', 'out'] as const) {
    if (!v[k]) throw new TtaqError('CLI_USAGE', `--${k} is required\n\n${HELP}`);
  }
  const modelPath = v.model as string;
  const out = v.out as string;
  if (!out.endsWith('.onnx')) throw new TtaqError('CLI_USAGE', `--out '${out}' should end in .onnx (the manifest and the int8 variant are named after it)`);
  // named choices are checked before the model and data load, with the flag's own name
  const choice = (flag: 'preset' | 'step-owner' | 'method' | 'act-calib', allowed: readonly string[]): void => {
    const val = v[flag] as string | undefined;
    if (val !== undefined && !allowed.includes(val)) throw new TtaqError('CLI_USAGE', `--${flag} '${val}' is not one of ${allowed.join(' | ')}`);
  };
  choice('preset', ['fast', 'default', 'paper']);
  choice('step-owner', ['producer', 'consumer']);
  choice('method', METHODS);
  choice('act-calib', ['minmax', 'percentile', 'mse']);
  const vi = v['variant-images'] as string | undefined;
  const variantImages = vi === undefined ? undefined : vi === 'all' ? Number.MAX_SAFE_INTEGER : num(vi, '--variant-images');
  if (variantImages !== undefined && !(Number.isInteger(variantImages) && variantImages >= 0)) throw new TtaqError('CLI_USAGE', `--variant-images '${vi}' should be a whole number of images or 'all'`);
  const wBits = checkWeightBits(num(v['w-bits'] as string, '--w-bits')!, '--w-bits');
  const aBits = checkActBits(num(v['a-bits'] as string, '--a-bits')!, '--a-bits');
  const statePath = v['no-state'] ? undefined : (v.state as string | undefined) ?? out.replace(/\.onnx$/, '.state.json');
  const int8Path = join(dirname(out), basename(out).replace(/\.onnx$/, '.int8.onnx'));
  // The outputs must not land on the inputs: quantizing a model onto itself would leave neither the
  // FP32 model nor the manifest that describes it.
  const outputs: [string, string][] = [['--out', out], ['the INT8-container variant', int8Path], ["--out's manifest", manifestPathFor(out)], ["the INT8 variant's manifest", manifestPathFor(int8Path)], ...(statePath ? [['--state', statePath] as [string, string]] : [])];
  for (const [what, path] of outputs) {
    for (const [input, ip] of [['model', modelPath], ['manifest', manifestPathFor(modelPath)]] as const) {
      if (canonical(path) === canonical(ip)) {
        throw new TtaqError('CLI_USAGE', `${what} '${path}' would overwrite the input ${input} '${ip}'; give the quantized model another name, e.g. --out ${out.replace(/(\.int8)?\.onnx$/, `-w${wBits}a${aBits}.onnx`)}`);
      }
    }
  }
  const seed = intFlag(v.seed as string | undefined, 'seed', 0) ?? 0;
  const calibN = intFlag(v['calib-images'] as string | undefined, 'calib-images', 1) ?? 1024;
  const evalLimit = intFlag(v['eval-limit'] as string | undefined, 'eval-limit', 1);
  const fl = v['first-last'] as string | undefined;
  const options: QuantizeOptionsInput = {
    wBits,
    aBits,
    method: (v.method ?? 'ttaq') as QuantizeOptionsInput['method'],
    preset: (v.preset ?? 'default') as QuantizeOptionsInput['preset'],
    calibImages: calibN,
    seed,
    ...(v.iterations ? { iterations: intFlag(v.iterations as string, 'iterations', 1) } : {}),
    ...(v.pem !== undefined ? { pem: num(v.pem as string, '--pem') } : {}),
    ...(v.pcr !== undefined ? { pcr: num(v.pcr as string, '--pcr') } : {}),
    ...(v['min-calib'] ? { minCalibImages: intFlag(v['min-calib'] as string, 'min-calib', 1) } : {}),
    ...(fl !== undefined ? { firstLastBits: fl === 'same' ? null : checkActBits(checkWeightBits(num(fl, '--first-last')!, '--first-last'), '--first-last') } : {}),
    overrides: ((v.override as string[] | undefined) ?? []).map(parseOverride),
    ...(v['act-calib'] ? { actCalib: v['act-calib'] as 'mse' } : {}),
    biasCorrection: !!v['bias-correction'],
    ...(v.batch ? { batch: intFlag(v.batch as string, 'batch', 1) } : {}),
    ...(v['step-owner'] ? { stepOwner: v['step-owner'] as 'producer' } : {}),
    ...(variantImages !== undefined ? { variantImages } : {}),
    ...(v.threads ? { intraOpThreads: intFlag(v.threads as string, 'threads', 1) } : {}),
    spinning: !!v.spinning,
    workers: v.workers === undefined || v.workers === 'auto' ? 'auto' : intFlag(v.workers as string, 'workers', 1)!,
    ...(statePath ? { statePath } : {}),
  };
  checkOptions(options);
  const model = await loadModel(modelPath);
  const manifest = await readManifest(manifestPathFor(modelPath));
  const note = (line: string): void => { if (!v.quiet) process.stderr.write(`note: ${line}\n`); };
  checkManifestAgainstModel(manifest, model, manifestPathFor(modelPath), await readFile(modelPath), note);
  // the outputs are written at the end (and the state after each block): their folders are made
  // and each file is tried for writing now, not after the run
  for (const [what, path] of outputs) prepareOutputFile(path, what);
  // one run at a time per output: two would overwrite each other's state, model and manifest
  const releaseLock = acquireLock(`${out}.lock`, `--out '${out}'`);
  try {
    const progress = progressPrinter(process.stderr, !!v.quiet);
    progress({ stage: 'load data', done: 0, total: 1 });
    const calib = toCalibSet(await readDataset(v.calib as string, '--calib', manifest, note), manifest, calibN, seed);
    const evalSet = v.eval ? toCalibSet(await readDataset(v.eval as string, '--eval', manifest, note), manifest, evalLimit ?? Number.MAX_SAFE_INTEGER, seed + 1) : undefined;
    // Ctrl-C: the finished blocks are in the state file (written atomically after each); say so
    const onInterrupt = (): void => {
      process.stderr.write(`\nttaq quantize: interrupted; ${statePath ? `the finished blocks are kept in ${statePath}: run the same command again to resume from the next one` : 'nothing is kept (--no-state)'}\n`);
      process.exit(130);
    };
    process.once('SIGINT', onInterrupt);
    let res: Awaited<ReturnType<typeof quantize>>;
    try {
      res = await quantize({ model, calib, ...(evalSet ? { eval: evalSet } : {}), options, progress });
    } finally {
      process.off('SIGINT', onInterrupt);
    }

    const command = `ttaq quantize ${argv.join(' ')}`;
    const files = (path: string, m: typeof res.model, variant: 'true-width' | 'int8-container'): { path: string; bytes: Uint8Array; manifest: string } => {
      const bytes = encodeModel(m);
      const inName = m.graph.inputs[0]!.name;
      const outName = m.graph.outputs[0]!.name;
      const mf: Manifest = {
        ...manifest,
        name: `${manifest.name}-w${res.options.wBits}a${res.options.aBits}-${res.options.method}${termSuffix(res.options)}${variant === 'int8-container' ? '-int8' : ''}`,
        model: basename(path),
        sha256: sha256Hex(bytes),
        // a fixed batch the quantizer freed (sdk/quant/batchdim.ts) is symbolic in the output too
      input: { name: inName, shape: typeof m.graph.inputs[0]!.shape?.[0] === 'number' ? manifest.input.shape : [-1, ...manifest.input.shape.slice(1)] },
        output: { name: outName },
        adaptation: { bnNodes: [...res.bnNodes] },
        quantization: { ...res.manifest, variant, layers: res.manifest.layers, calibration: res.manifest.calibration },
        provenance: {
          command,
          dataset: v.calib as string,
          metrics: {
            ...(res.report.accuracy && Number.isFinite(res.report.accuracy.quantized) ? { fp32Accuracy: res.report.accuracy.fp32, accuracy: res.report.accuracy.quantized } : {}),
            ...(res.report.outputSqnrDb !== null && Number.isFinite(res.report.outputSqnrDb) ? { outputSqnrDb: res.report.outputSqnrDb } : {}),
          },
          createdAt: new Date().toISOString(),
        },
      };
      return { path, bytes, manifest: JSON.stringify(ManifestSchema.parse(mf), null, 2) + '\n' };
    };
    // every file is made before any is written, and each is written whole (temp file + rename): a
    // failure cannot leave a model beside a manifest of another
    for (const f of [files(out, res.model, 'true-width'), files(int8Path, res.int8Model, 'int8-container')]) {
      await writeFileAtomic(f.path, f.bytes);
      await writeFileAtomic(manifestPathFor(f.path), f.manifest);
    }
    if (v.json) printJson({ out, int8: int8Path, report: res.report });
    else printReport(res.report, out, options.iterations !== undefined);
    return EXIT.ok;
  } finally {
    releaseLock();
  }
}

/**
 * The manifest must describe this model: it gives the preprocessing that makes the calibration
 * tensor and the labels the report scores, so a manifest of another model would fail later with a
 * message blaming the images, or pass with a wrong class list. A SHA-256 of another file is only
 * noted: a re-exported model of the same network keeps its manifest's meaning.
 */
function checkManifestAgainstModel(m: Manifest, model: Model, path: string, bytes: Uint8Array, note: (line: string) => void): void {
  const fix = `fix ${path}, or make it again: ttaq manifest <model.onnx> --labels ... --mean ... --std ...`;
  const input = model.graph.inputs.find((i) => !model.graph.initializers.has(i.name));
  const dims = input?.shape ?? [];
  const p = m.preprocess;
  const wanted = [p.channels, p.height, p.width];
  if (dims.length === 4) {
    const clash = [1, 2, 3].find((k) => typeof dims[k] === 'number' && (dims[k] as number) > 0 && dims[k] !== wanted[k - 1]);
    if (clash !== undefined) {
      throw new TtaqError('MANIFEST_INVALID', `${path}: its preprocessing makes ${wanted.join('x')} (channels x height x width) images, but the model's input '${input!.name}' takes [${dims.join(', ')}]; ${fix}`);
    }
  }
  const logits = model.graph.outputs[0]?.shape;
  const classes = logits?.at(-1);
  if (typeof classes === 'number' && classes > 0 && classes !== m.labels.length) {
    throw new TtaqError('MANIFEST_INVALID', `${path}: it lists ${m.labels.length} labels, but the model's output '${model.graph.outputs[0]!.name}' has ${classes} classes; ${fix}`);
  }
  const sha = sha256Hex(bytes);
  if (sha !== m.sha256) note(`${path} was made for another file (SHA-256 ${m.sha256.slice(0, 12)}…, this model's is ${sha.slice(0, 12)}…); its preprocessing and labels are used as they are`);
}
