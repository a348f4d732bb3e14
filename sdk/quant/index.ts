// sdk/quant: low-bit post-training quantization with block reconstruction (AdaRound + LSQ +
// QDrop), PEM and PCR, and QDQ export.
//
//   quantize({ model, calib, eval?, options, progress? }) -> QuantizeResult
//     model    FP32 inference model (BN on running statistics, or folded: BNs are inserted)
//     calib    preprocessed calibration images (NCHW float32), labels optional
//     options  QuantizeOptionsSchema (wBits 2|3|4|8, aBits 2|3|4|8, method minmax|mse|adaround|brecq|
//              qdrop|ttaq, preset fast|default|paper, pem/pcr weights, overrides, statePath, ...)
//   -> { model (true-width QDQ), int8Model (same numbers in 8-bit containers), plan, values,
//        blocks, report, manifest (the manifest's `quantization` section), bnNodes }
//
// The pieces are exported for callers that need one step: quantizer math (quantizer.ts),
// calibration (calibrate.ts, weightsearch.ts, ptq.ts, stats.ts), placement (plan.ts), BN insertion (prepare.ts),
// blocks (blocks.ts), reconstruction (recon.ts, recongraph.ts, with the ops of their own gradient
// rules: lsq.ts, adaround.ts), PEM (pem.ts), export (export.ts).
import { TtaqError, isTtaqError } from '../errors/index.ts';
import { chooseWorkers, getRule } from '../autodiff/index.ts';
import type { Model } from '../onnx/types.ts';
import { noProgress, type ProgressFn } from '../progress/index.ts';
import { blockGraph, partitionBlocks, type Block } from './blocks.ts';
import { exportQdq, weightBytesByDType, type QuantValues } from './export.ts';
import { independentRows, withSymbolicBatch } from './batchdim.ts';
import { parseQuantizeOptions, resolveMethod, type MethodPlan, type QuantizeOptions, type QuantizeOptionsInput } from './options.ts';
import { measurePerturbation, type LayerPerturbation } from './pem.ts';
import { makePlan, type QuantPlan } from './plan.ts';
import { prepareModel } from './prepare.ts';
import { calibrateModel } from './ptq.ts';
import { blockSites, initialCaches, quantizedBlock, reconstructBlock, runOver, type BlockCaches, type BlockReport, type MutableValues } from './recon.ts';
import { accuracy, accuracyOf, allLogits, compareLogits, compareOutputs, modelBytes, type LayerSqnr, type QuantReport } from './report.ts';
import { fixedBatch, modelInput, setSize, type CalibSet } from './stats.ts';
import { decodeCodes, encodeCodes, loadState, saveState, stateKey, type ReconState } from './state.ts';
import { sha256Hex } from '../manifest/index.ts';
import { encodeModel } from '../onnx/codec.ts';

export * from './quantizer.ts';
export * from './calibrate.ts';
export { makePlan, weightOf, WEIGHTED_OPS, type ActSite, type LayerOverride, type PlanOptions, type QuantPlan, type WeightSite } from './plan.ts';
export { prepareModel, convsWithoutBn, type BnInsertion, type PreparedModel } from './prepare.ts';
export { freeBatch, independentRows, rewriteBatch, withSymbolicBatch, FREED_BATCH, type FreedBatch } from './batchdim.ts';
export { partitionBlocks, blockGraph, segments, type Block } from './blocks.ts';
export { exportQdq, qdqGraph, requiredOpset, dequantizedWeights, weightBytesByDType, type ExportVariant, type QuantValues } from './export.ts';
export { calibrateModel, type CalibrationOptions, type CalibrationResult } from './ptq.ts';
export { calibrateWeightsOrt, type WeightTensor } from './weightsearch.ts';
export { collectStats, candidateErrorsOrt, sampleValues, type CalibSet, type ValueStats } from './stats.ts';
export { measurePerturbation, DEFAULT_PERTURBATIONS, type Perturbation, type PerturbationKind, type LayerPerturbation } from './pem.ts';
export { buildReconGraph, initialV, hardCodes, nodeV, perSampleNodes, LEGACY_RECON_FORMULATION, type ReconGraph, type ReconGraphOptions, type ReconFormulation } from './recongraph.ts';
export { reconstructBlock, quantizedBlock, RECON_CONV_GRAD, type BlockReport, type ReconOptions } from './recon.ts';
export { QuantizeOptionsSchema, parseQuantizeOptions, resolveMethod, METHODS, PRESETS, TTAQ_TERMS, type Method, type Preset, type QuantizeOptions, type QuantizeOptionsInput, type MethodPlan } from './options.ts';
export type { QuantReport, LayerSqnr } from './report.ts';

export interface QuantizeInput {
  readonly model: Model;
  readonly calib: CalibSet;
  /** Labelled images for the accuracy report (default: the calibration images when they carry labels). */
  readonly eval?: CalibSet;
  readonly options: QuantizeOptionsInput;
  readonly progress?: ProgressFn;
}

export interface ManifestQuantization {
  readonly weightBits: number;
  readonly activationBits: number;
  readonly method: string;
  readonly layers: { node: string; weightBits: number; activationBits?: number }[];
  readonly calibration: Record<string, unknown>;
}

export interface QuantizeResult {
  readonly model: Model;
  readonly int8Model: Model;
  readonly prepared: Model;
  readonly plan: QuantPlan;
  readonly values: QuantValues;
  readonly blocks: readonly Block[];
  readonly report: QuantReport;
  readonly manifest: ManifestQuantization;
  /** BN nodes of the quantized model (adaptation sites). */
  readonly bnNodes: readonly string[];
  readonly options: QuantizeOptions;
  readonly method: MethodPlan;
}

/**
 * Checks a set of images (and labels) a pass will feed the model, before any work: a Float32Array
 * of the dims it claims, each sample of the model input's size, every value finite (one NaN makes
 * every statistic NaN and the exported model useless), labels one per image and among the model's
 * classes. `role` names the set in errors ('calibration', 'evaluation').
 */
function checkImageSet(model: Model, set: CalibSet, role: string): void {
  if (!(set.images instanceof Float32Array)) {
    const got = set.images === undefined ? 'no images' : `a ${(set.images as object).constructor?.name ?? typeof set.images}`;
    throw new TtaqError('QUANT_CALIB_MISSING', `${role} images must be a Float32Array of preprocessed values (model input layout, normalised), got ${got}; turn decoded images into one with preprocessBatch(batch, manifest.preprocess) from sdk/data`);
  }
  const n = set.dims[0]!;
  const per = set.dims.slice(1).reduce((a, b) => a * b, 1);
  if (set.images.length !== n * per) {
    throw new TtaqError('QUANT_CALIB_MISSING', `${role} tensor holds ${set.images.length} values for dims [${set.dims.join(', ')}]; the reader is wrong`);
  }
  const input = model.graph.inputs.find((i) => i.name === modelInput(model))!;
  const shape = input.shape ?? [];
  set.dims.slice(1).forEach((d, i) => {
    const want = shape[i + 1];
    if (typeof want === 'number' && want !== d) {
      throw new TtaqError('QUANT_CALIB_MISSING', `${role} images are [${set.dims.slice(1).join(', ')}] per sample, the model input '${input.name}' takes [${shape.slice(1).join(', ')}]; preprocess them to the model's size`);
    }
  });
  const bad = set.images.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new TtaqError('DATA_BAD_FORMAT', `${role} image ${Math.floor(bad / per)} holds ${set.images[bad]} at value ${bad % per}; every value must be finite: check the images and the preprocessing (a std of 0 divides by zero)`, { image: Math.floor(bad / per) });
  }
  if (set.labels) {
    if (set.labels.length < n) throw new TtaqError('DATA_BAD_FORMAT', `${role} set has ${set.labels.length} labels for ${n} images; give one label per image`);
    const classes = model.graph.outputs[0]?.shape?.at(-1);
    for (let i = 0; i < n; i++) {
      const l = set.labels[i]!;
      if (!Number.isInteger(l) || l < 0 || (typeof classes === 'number' && l >= classes)) {
        throw new TtaqError('DATA_BAD_FORMAT', `${role} label ${l} at image ${i} is not a class of the model (0..${typeof classes === 'number' ? classes - 1 : 'C-1'})${l === classes ? '; the labels look 1-based: subtract 1' : ''}`, { image: i, label: l });
      }
    }
  }
}

function checkCalib(model: Model, set: CalibSet | undefined, o: QuantizeOptions): CalibSet {
  if (!set || !set.images || !Array.isArray(set.dims) || set.dims.length === 0 || set.dims[0]! === 0) {
    throw new TtaqError('QUANT_CALIB_MISSING', 'no calibration images given; pass --calib <dataset> (1,024 images by default)');
  }
  const n = set.dims[0]!;
  const per = set.dims.slice(1).reduce((a, b) => a * b, 1);
  const need = Math.max(o.minCalibImages, fixedBatch(model) ?? 1);
  if (n < need) {
    throw new TtaqError('QUANT_CALIB_TOO_SMALL', `${n} calibration images; at least ${need} are needed (256 to 1,024 calibrate best); pass a larger --calib set or --calib-images, or lower --min-calib to accept fewer`, { images: n, needed: need });
  }
  checkImageSet(model, set, 'calibration');
  const take = Math.min(n, o.calibImages);
  return { images: set.images.subarray(0, take * per), dims: [take, ...set.dims.slice(1)], ...(set.labels ? { labels: set.labels } : {}) };
}

/**
 * The image counts of the passes over a model that keeps a fixed batch size B (one batchdim.ts
 * could not free: calibration without reconstruction). Every pass runs B images at a time and pads
 * a last partial batch with repeats of its own images, counting only the real ones (stats.ts).
 * That is exact when an image's outputs do not depend on the other images of its batch, which is
 * checked (independentRows) when some count is not a whole number of batches. When they do
 * depend on them, padding would bias the statistics: the calibration and evaluation sets must be
 * whole batches (refused up front, with the counts that are), and the subsets taken of them
 * (activation statistics, SQNR report, variant comparison) are rounded down to whole batches.
 */
async function fixedBatchCounts(model: Model, calib: CalibSet, evalSet: CalibSet | undefined, o: QuantizeOptions): Promise<Pick<QuantizeOptions, 'actImages' | 'reportImages' | 'variantImages'>> {
  const counts = { actImages: o.actImages, reportImages: o.reportImages, variantImages: o.variantImages };
  const b = fixedBatch(model);
  if (b === undefined || b === 1) return counts;
  const nCalib = setSize(calib);
  const nEval = evalSet ? setSize(evalSet) : undefined;
  const used = [nCalib, Math.min(o.actImages, nCalib), Math.min(o.reportImages, nCalib), ...(nEval !== undefined ? [nEval, Math.min(o.variantImages, nEval)] : [])];
  if (used.every((n) => n % b === 0)) return counts;
  const r = await independentRows(model);
  if (r.independent) return counts;
  const whole = (n: number): number => Math.max(b, n - (n % b));
  const partial = [
    ...(nCalib % b ? [`the ${nCalib} calibration images (pass --calib-images ${whole(nCalib)})`] : []),
    ...(nEval !== undefined && evalSet !== calib && nEval % b ? [`the ${nEval} evaluation images (pass --eval-limit ${whole(nEval)}${nEval < b ? `, with at least ${b} images in --eval` : ''})`] : []),
  ];
  if (partial.length) {
    throw new TtaqError('QUANT_BAD_MODEL', `model '${model.graph.name}' has a fixed batch size of ${b} that cannot be freed, and ${r.reason}: a partial batch cannot be padded without biasing the statistics, so every set must be whole batches of ${b}; ${partial.join(' and ')} are not. Use a multiple of ${b}, or re-export the model with a dynamic batch axis`, { batch: b, calibImages: nCalib, ...(nEval !== undefined ? { evalImages: nEval } : {}) });
  }
  const subset = (k: number, of: number): number => (k === 0 ? 0 : whole(Math.min(k, of)));
  return { actImages: subset(o.actImages, nCalib), reportImages: subset(o.reportImages, nCalib), variantImages: subset(o.variantImages, nEval ?? 0) };
}

/** Ops of a block that the autodiff engine cannot differentiate. */
function missingRules(model: Model, b: Block): { node: string; op: string }[] {
  const byName = new Map(model.graph.nodes.map((n) => [n.name, n]));
  return b.nodes.map((n) => byName.get(n)!).filter((n) => !getRule(n.opType, n.domain)).map((n) => ({ node: n.name, op: n.opType }));
}

const copyValues = (v: QuantValues): MutableValues => ({ weights: new Map(v.weights), acts: new Map(v.acts) });

export async function quantize(input: QuantizeInput): Promise<QuantizeResult> {
  if (!Array.isArray((input?.model as Model | undefined)?.graph?.nodes)) {
    throw new TtaqError('QUANT_BAD_MODEL', `quantize: 'model' must be a loaded model (await loadModel(path) from sdk/onnx), got ${typeof input?.model === 'string' ? `the string '${input.model}'` : typeof input?.model}`);
  }
  const o = parseQuantizeOptions(input.options);
  const mp = resolveMethod(o);
  const progress = input.progress ?? noProgress;
  const seconds: Record<string, number> = {};
  let t = performance.now();
  const lap = (k: string): void => { const now = performance.now(); seconds[k] = (now - t) / 1000; t = now; };

  const planOpts = {
    wBits: o.wBits, aBits: o.aBits, firstLastBits: o.firstLastBits, inputBits: o.inputBits,
    weightSymmetric: o.weightSymmetric, overrides: o.overrides,
  };
  makePlan(input.model.graph, planOpts); // bit widths and the model are checked before any work
  // reconstruction and PEM run batches of their own size: a fixed batch dimension is freed
  const source = await withSymbolicBatch(input.model, mp.reconstruct);
  const set = checkCalib(source, input.calib, o);
  if (input.eval) checkImageSet(source, input.eval, 'evaluation');
  const evalSet = input.eval ?? (set.labels ? set : undefined);
  // a batch that stayed fixed: passes pad their last batch where that is exact (else refused here)
  const counts = await fixedBatchCounts(source, set, evalSet?.labels ? evalSet : undefined, o);
  progress({ stage: 'prepare', done: 0, total: 1 });
  const prep = await prepareModel(source, set, o.bnInsertion);
  const model = prep.model;
  const plan = makePlan(model.graph, planOpts);
  const blocks = mp.reconstruct ? partitionBlocks(model.graph, new Set(plan.weights.map((w) => w.node))) : [];
  for (const b of blocks) {
    const miss = missingRules(model, b);
    if (miss.length) {
      const m = miss[0]!;
      throw new TtaqError('QUANT_NO_GRAD_RULE', `block '${b.name}' contains node '${m.node}' (${m.op}), which has no gradient rule, so it cannot be reconstructed; use --method mse (no reconstruction) or add a rule under sdk/autodiff/rules/${m.op}.ts`, { block: b.name, node: m.node, op: m.op });
    }
  }
  lap('prepare');
  progress({ stage: 'calibrate', done: 0, total: 1 });
  const cal = await calibrateModel(model, plan, set, {
    weight: { method: mp.weightCalib, p: o.weightP },
    act: mp.actCalib,
    percentile: o.percentile,
    actImages: counts.actImages,
    actSearch: o.actSearch,
    weightSearch: o.weightSearch,
    biasCorrection: o.biasCorrection,
  });
  lap('calibrate');
  const values = copyValues(cal.values);
  const blockReports: BlockReport[] = [];
  // the most data-parallel slices a block's step may run in (small blocks run in one session)
  const workers = mp.reconstruct ? chooseWorkers(o.workers, Math.min(o.batch, set.dims[0]!)) : 1;
  let pemInfo: Map<string, LayerPerturbation> | undefined;
  if (mp.reconstruct) {
    if (mp.pem > 0) {
      progress({ stage: 'pem', done: 0, total: 1 });
      pemInfo = await measurePerturbation(model, plan, set, { ...(o.perturbations ? { perturbations: o.perturbations } : {}), limit: o.actImages, seed: o.seed + 11 });
      lap('pem');
    }
    // the calibration tensor itself (after preprocessing) is part of the key: finished blocks fitted
    // to other images, or to the same images normalised differently, must not be resumed under new ones
    const calibSha = sha256Hex(new Uint8Array(set.images.buffer, set.images.byteOffset, set.images.byteLength));
    const keyOpts = { ...o, statePath: undefined, reportImages: undefined, variantImages: undefined, intraOpThreads: undefined, spinning: undefined, workers: undefined, dims: set.dims, calibSha };
    const key = stateKey(sha256Hex(encodeModel(input.model)), keyOpts);
    const kept = o.statePath ? await loadState(o.statePath, key) : undefined;
    const state: ReconState = { format: 'ttaq-quant-state/1', key, blocks: kept?.blocks ?? [], total: blocks.length };
    let caches: BlockCaches = initialCaches(set, set.dims[0]!);
    const sitesOf = (b: Block) => blockSites(plan, b);
    // the steps a finished block set: its own sites' and its output quantizer's
    const stepSites = (b: Block) => { const s = sitesOf(b); return [...s.acts, ...(s.output ? [s.output] : [])]; };
    for (const b of blocks) {
      const stage = `block ${b.index + 1}/${blocks.length} ${b.name}`;
      const sites = sitesOf(b);
      const done = state.blocks.find((s) => s.block === b.name);
      if (done) {
        for (const w of sites.weights) {
          const cur = values.weights.get(w.node)!;
          const enc = done.codes[w.node];
          if (enc) values.weights.set(w.node, { params: cur.params, codes: decodeCodes(enc, cur.codes.length, `state of block '${b.name}'`) });
        }
        for (const a of stepSites(b)) {
          const s = done.steps[a.value];
          const cur = values.acts.get(a.value)!;
          if (s !== undefined) values.acts.set(a.value, { ...cur, scale: Float32Array.of(s) });
        }
        const fp = await runOver({ ...model, graph: blockGraph(model.graph, b), metadata: {} }, b.input, b.output, caches.xfp, caches.dims);
        const q = await runOver(quantizedBlock(model, b, { plan, ...values }), b.input, b.output, caches.xq, caches.dims);
        caches = { xfp: fp.data, xq: q.data, dims: fp.dims };
        blockReports.push(done.report);
        progress({ stage: `${stage} (resumed)`, done: 1, total: 1 });
        continue;
      }
      try {
        const r = await reconstructBlock(model, b, sites, values, plan, caches, {
          iterations: mp.iterations,
          batch: o.batch,
          inputQuantProb: mp.inputQuantProb,
          learnActs: mp.learnActs,
          stepOwner: o.stepOwner,
          lrV: o.lrV,
          lrStep: o.lrStep,
          roundWeight: o.roundWeight,
          betaStart: o.betaStart,
          betaEnd: o.betaEnd,
          warmup: o.warmup,
          seed: o.seed,
          ...(pemInfo && mp.pem > 0 ? { pem: { weight: mp.pem, coef: new Map([...pemInfo].map(([k, v]) => [k, v.coef])) } } : {}),
          ...(mp.pcr > 0 ? { pcr: { weight: mp.pcr, gamma: o.pcrGamma, temperature: o.pcrTemperature } } : {}),
          ...(o.intraOpThreads ? { intraOpThreads: o.intraOpThreads } : {}),
          spinning: o.spinning,
          workers: o.workers === 'auto' ? 'auto' : workers,
        }, progress, stage);
        caches = r.next;
        blockReports.push(r.report);
      } catch (e) {
        if (isTtaqError(e) && e.code === 'AUTODIFF_NO_RULE') {
          throw new TtaqError('QUANT_NO_GRAD_RULE', `block '${b.name}': ${e.message}; use --method mse (no reconstruction) for this model`, { block: b.name }, { cause: e });
        }
        throw e;
      }
      if (o.statePath) {
        const sites2 = sitesOf(b);
        state.blocks.push({
          block: b.name,
          report: blockReports.at(-1)!,
          codes: Object.fromEntries(sites2.weights.map((w) => [w.node, encodeCodes(values.weights.get(w.node)!.codes)])),
          steps: Object.fromEntries(stepSites(b).map((a) => [a.value, values.acts.get(a.value)!.scale[0]!])),
        });
        await saveState(o.statePath, state);
      }
    }
    lap('reconstruct');
  }
  const finalValues: QuantValues = { plan, weights: values.weights, acts: values.acts, biases: cal.values.biases ?? new Map() };
  const meta = { 'ttaq.quant.method': o.method, 'ttaq.quant.w_bits': String(o.wBits), 'ttaq.quant.a_bits': String(o.aBits) };
  const trueWidth = exportQdq(model, finalValues, 'true-width', { ...meta, 'ttaq.quant.variant': 'true-width' });
  const int8 = exportQdq(model, finalValues, 'int8-container', { ...meta, 'ttaq.quant.variant': 'int8-container' });
  lap('export');

  // report
  progress({ stage: 'report', done: 0, total: 1 });
  const nodeOut = new Map(model.graph.nodes.map((n) => [n.name, n.outputs[0]!]));
  const logits = model.graph.outputs[0]!.name;
  const watch = [...plan.weights.map((w) => nodeOut.get(w.node)!), logits];
  const sq = counts.reportImages > 0 ? await compareOutputs(model, int8, [...new Set(watch)], set, counts.reportImages) : new Map<string, number>();
  const actBitsOf = new Map<string, number>();
  for (const a of plan.acts) for (const c of a.consumers) actBitsOf.set(c, a.spec.bits);
  const layers: LayerSqnr[] = plan.weights.map((w) => ({
    node: w.node, weightBits: w.spec.bits, activationBits: actBitsOf.get(w.node) ?? null, sqnrDb: sq.get(nodeOut.get(w.node)!) ?? NaN,
  }));
  let acc: QuantReport['accuracy'] = null;
  let variants: QuantReport['variants'] = null;
  if (evalSet?.labels) {
    const n = evalSet.dims[0]!;
    const tw = await allLogits(trueWidth, evalSet);
    acc = { fp32: await accuracy(model, evalSet), quantized: accuracyOf(tw, evalSet.labels), images: n, source: input.eval ? 'eval set' : 'calibration images' };
    // the INT8-container variant has the same numerics (docs/METHOD.md): checked on the first images
    if (counts.variantImages > 0) variants = compareLogits(tw, await allLogits(int8, evalSet, Math.min(n, counts.variantImages)));
  }
  lap('report');
  const report: QuantReport = {
    method: o.method,
    weightBits: o.wBits,
    activationBits: o.aBits,
    layers,
    outputSqnrDb: sq.get(logits) ?? null,
    size: { fp32Bytes: modelBytes(input.model), quantizedBytes: modelBytes(trueWidth), weightsByDType: weightBytesByDType(trueWidth) },
    accuracy: acc,
    variants,
    blocks: blockReports,
    seconds,
    calibration: cal.summary,
    reconstruction: mp.reconstruct ? { preset: o.preset, iterationsPerBlock: mp.iterations, pem: mp.pem, pcr: mp.pcr, slices: workers } : null,
    ...(pemInfo ? { pem: Object.fromEntries([...pemInfo].map(([k, v]) => [k, { rho: v.rho, coef: v.coef }])) } : {}),
  };
  progress({ stage: 'report', done: 1, total: 1 });
  const manifest: ManifestQuantization = {
    weightBits: o.wBits,
    activationBits: o.aBits,
    method: o.method,
    layers: plan.weights.map((w) => ({ node: w.node, weightBits: w.spec.bits, ...(actBitsOf.has(w.node) ? { activationBits: actBitsOf.get(w.node)! } : {}) })),
    calibration: {
      images: set.dims[0],
      ...cal.summary,
      preset: mp.reconstruct ? o.preset : undefined,
      iterationsPerBlock: mp.iterations,
      pem: mp.pem,
      pcr: mp.pcr,
      insertedBn: prep.inserted,
    },
  };
  return { model: trueWidth, int8Model: int8, prepared: model, plan, values: finalValues, blocks, report, manifest, bnNodes: prep.bnNodes, options: o, method: mp };
}
