// Post-training calibration of a whole model: weight quantizers per output channel (MinMax or Lp
// search, evaluated in onnxruntime), activation quantizers per tensor (MinMax, percentile, or an MSE search
// evaluated in onnxruntime), optional bias correction. The result is nearest-rounded integer codes;
// reconstruction (recon.ts) starts from it.
import { TtaqError } from '../errors/index.ts';
import type { Model, Node } from '../onnx/types.ts';
import { actCandidates, calibrateWeight, candidateErrorsJs, correctedBias, quantile, type ActCalib, type WeightCalibOptions } from './calibrate.ts';
import type { QuantValues } from './export.ts';
import type { QuantPlan } from './plan.ts';
import { fakeQuant, paramsForRange, quantize, type QuantParams } from './quantizer.ts';
import { candidateErrorsOrt, collectStats, sampleValues, type CalibSet, type ValueStats } from './stats.ts';
import { calibrateWeightsOrt } from './weightsearch.ts';

export interface CalibrationOptions {
  readonly weight: WeightCalibOptions;
  readonly act: ActCalib;
  /** Percentile for `act: 'percentile'` (default 99.99). */
  readonly percentile?: number;
  /** Images used for activation statistics and searches (default 256). */
  readonly actImages?: number;
  /** Candidate clipping ratios for the activation MSE search (default 100). */
  readonly actSteps?: number;
  /** Where the activation MSE search runs (default 'ort'). */
  readonly actSearch?: 'ort' | 'js';
  /** Where the weight Lp search runs (default 'ort'; 'js' is calibrateWeight, the reference). */
  readonly weightSearch?: 'ort' | 'js';
  readonly biasCorrection?: boolean;
}

export interface CalibrationResult {
  readonly values: QuantValues;
  readonly actStats: ReadonlyMap<string, ValueStats>;
  readonly summary: Record<string, unknown>;
}

function floatInit(model: Model, name: string): Float32Array {
  const t = model.graph.initializers.get(name);
  if (!t || t.dtype !== 'float32') throw new TtaqError('QUANT_BAD_MODEL', `initializer '${name}' is missing or not float32`);
  return t.data;
}

export async function calibrateModel(model: Model, plan: QuantPlan, set: CalibSet, opts: CalibrationOptions): Promise<CalibrationResult> {
  const t0 = performance.now();
  const weights = new Map<string, { params: QuantParams; codes: Int32Array }>();
  const sites = plan.weights.map((site) => ({ site, w: floatInit(model, site.weight) }));
  const params = (opts.weightSearch ?? 'ort') === 'ort'
    ? await calibrateWeightsOrt(sites.map(({ site, w }) => ({ w, dims: site.dims, spec: site.spec })), opts.weight)
    : sites.map(({ site, w }) => calibrateWeight(w, site.dims, site.spec, opts.weight));
  sites.forEach(({ site, w }, i) => weights.set(site.node, { params: params[i]!, codes: quantize(w, site.dims, params[i]!) }));
  const tw = performance.now();
  const actImages = Math.min(opts.actImages ?? 256, set.dims[0]!);
  const values = plan.acts.map((a) => a.value);
  const actStats = await collectStats(model, values, set, { limit: actImages });
  const acts = new Map<string, QuantParams>();
  const steps = opts.actSteps ?? 100;
  if (opts.act === 'minmax') {
    for (const a of plan.acts) {
      const st = actStats.get(a.value)!;
      const p = paramsForRange(st.min, st.max, a.spec);
      acts.set(a.value, { spec: a.spec, scale: Float32Array.of(p.scale), zeroPoint: Int32Array.of(p.zeroPoint) });
    }
  } else if (opts.act === 'percentile') {
    const q = (opts.percentile ?? 99.99) / 100;
    const samples = await sampleValues(model, values, set, { limit: actImages });
    for (const a of plan.acts) {
      const xs = samples.get(a.value)!;
      const p = paramsForRange(quantile(xs, 1 - q), quantile(xs, q), a.spec);
      acts.set(a.value, { spec: a.spec, scale: Float32Array.of(p.scale), zeroPoint: Int32Array.of(p.zeroPoint) });
    }
  } else {
    const cands = plan.acts.map((a) => {
      const st = actStats.get(a.value)!;
      return { value: a.value, spec: a.spec, ...actCandidates(st.min, st.max, a.spec, steps) };
    });
    let errs: Map<string, Float64Array>;
    if ((opts.actSearch ?? 'ort') === 'ort') {
      errs = await candidateErrorsOrt(model, cands, set, { limit: actImages });
    } else {
      const samples = await sampleValues(model, values, set, { limit: actImages, cap: Number.MAX_SAFE_INTEGER });
      errs = new Map(cands.map((c) => [c.value, candidateErrorsJs(samples.get(c.value)!, c, c.spec)]));
    }
    for (const c of cands) {
      const e = errs.get(c.value)!;
      let best = 0;
      for (let k = 1; k < e.length; k++) if (e[k]! < e[best]!) best = k;
      acts.set(c.value, { spec: c.spec, scale: Float32Array.of(c.scale[best]!), zeroPoint: Int32Array.of(c.zeroPoint[best]!) });
    }
  }
  const ta = performance.now();
  const biases = new Map<string, Float32Array>();
  if (opts.biasCorrection) {
    const inputOf = new Map<string, string>();
    for (const a of plan.acts) for (const c of a.consumers) inputOf.set(c, a.value);
    const byName = new Map<string, Node>(model.graph.nodes.map((n) => [n.name, n]));
    for (const site of plan.weights) {
      const n = byName.get(site.node)!;
      const group = n.attrs.group;
      if (group && group.kind === 'int' && group.value !== 1) continue;
      const inVal = inputOf.get(site.node) ?? n.inputs[0]!;
      let st = actStats.get(inVal);
      if (!st) st = (await collectStats(model, [inVal], set, { limit: actImages })).get(inVal)!;
      const w = floatInit(model, site.weight);
      const v = weights.get(site.node)!;
      const wq = fakeQuant(w, site.dims, v.params);
      const layout = site.opType === 'Conv' || (site.opType === 'Gemm' && site.axis === 0) ? 'OI..' : 'IO';
      const bias = site.bias ? floatInit(model, site.bias) : undefined;
      if (!site.bias) continue; // no bias to carry the correction (a BN follows: its β absorbs it at adaptation)
      biases.set(site.bias, correctedBias(bias, w, wq, site.dims, st.mean, layout));
    }
  }
  const summary = {
    weightMethod: opts.weight.method,
    weightSearch: opts.weight.method === 'lp' ? (opts.weightSearch ?? 'ort') : undefined,
    actMethod: opts.act,
    actImages,
    actSearch: opts.act === 'mse' ? (opts.actSearch ?? 'ort') : undefined,
    biasCorrection: !!opts.biasCorrection,
    seconds: { weights: (tw - t0) / 1000, activations: (ta - tw) / 1000 },
    activationRanges: Object.fromEntries(plan.acts.map((a) => {
      const st = actStats.get(a.value)!;
      const p = acts.get(a.value)!;
      return [a.value, { min: st.min, max: st.max, scale: p.scale[0], zeroPoint: p.zeroPoint[0], bits: a.spec.bits }];
    })),
  };
  return { values: { plan, weights, acts, biases }, actStats, summary };
}
