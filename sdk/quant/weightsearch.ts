// The Lp clipping search of weight quantizers (calibrate.ts's 'lp') evaluated in onnxruntime.
// The search tries `steps` shrunken ranges per output channel and keeps the one with the smallest
// Σ|w − ŵ|^p: steps × (number of weights) quantize-dequantize-power terms, 27 million for ResNet-20
// at the default 100 steps, and 2.5 billion for a ResNet-50. In JavaScript that took 3.2 s of the
// former; here one graph evaluates a block of candidates over a whole weight tensor per run, and
// only the [candidates, channels] error table comes back. calibrateWeight stays the reference.
import { A, GraphBuilder } from '../onnx/builder.ts';
import { TtaqError } from '../errors/index.ts';
import { f32 } from '../onnx/tensor.ts';
import type { Model } from '../onnx/types.ts';
import { createSession, type Session } from '../runtime/index.ts';
import { channelMinMax, paramsForRange, rangeOf, type QuantParams, type QuantSpec } from './quantizer.ts';
import { calibrateWeight, clipRatio, lpSearchSettings, type WeightCalibOptions } from './calibrate.ts';

export interface WeightTensor {
  readonly w: Float32Array;
  readonly dims: readonly number[];
  readonly spec: QuantSpec;
}

/** Default bound on one run's [candidates, outer, channels, inner] broadcast (16 MB of float32). */
const MAX_ELEMENTS = 4_000_000;

/**
 * The error graph: w [outer, C, inner] against candidates scale, zp [R, 1, C, 1] (zp as float),
 * qmin, qmax and p as scalars; err [R, C] = Σ over outer and inner of |w − dq(q(w))|^p, with
 * QuantizeLinear's arithmetic (w / s rounded half to even, plus zp, clipped).
 */
function errorModel(): Model {
  const b = new GraphBuilder('weight_lp_search');
  const w = b.input('w', 'float32', ['outer', 'channels', 'inner']);
  const s = b.input('scale', 'float32', ['candidates', 1, 'channels', 1]);
  const z = b.input('zero_point', 'float32', ['candidates', 1, 'channels', 1]);
  const [qmin, qmax, p] = ['qmin', 'qmax', 'p'].map((n) => b.input(n, 'float32', []));
  const q = b.op1('Clip', [b.op1('Add', [b.op1('Round', [b.op1('Div', [w, s])]), z]), qmin!, qmax!]);
  const dq = b.op1('Mul', [b.op1('Sub', [q, z]), s]);
  const e = b.op1('Pow', [b.op1('Abs', [b.op1('Sub', [dq, w])]), p!]);
  b.op('ReduceSum', [e, b.ints([1, 3])], { keepdims: A.int(0) }, { outputNames: ['err'] });
  b.output('err', 'float32', ['candidates', 'channels']);
  return { irVersion: 8, opsetImports: [{ domain: '', version: 17 }], producerName: 'ttaq', producerVersion: '0.1.0', metadata: {}, graph: b.build() };
}

/** [outer, channels, inner] of a tensor quantized along `axis` (per tensor: one channel). */
function layout(dims: readonly number[], axis: number | undefined): [number, number, number] {
  const n = dims.reduce((a, d) => a * d, 1);
  if (axis === undefined) return [1, 1, n];
  const a = axis < 0 ? axis + dims.length : axis;
  const outer = dims.slice(0, a).reduce((x, d) => x * d, 1);
  return [outer, dims[a]!, n / (outer * dims[a]!)];
}

/** One weight tensor's search: candidates in blocks that keep a run's broadcast within `maxElements`. */
async function searchOne(session: Session, site: WeightTensor, opts: WeightCalibOptions, maxElements: number): Promise<QuantParams> {
  const { spec } = site;
  const { min, max } = channelMinMax(site.w, site.dims, spec.axis);
  const { p, steps, minRatio } = lpSearchSettings(opts);
  const [outer, C, inner] = layout(site.dims, spec.axis);
  const { qmin, qmax } = rangeOf(spec);
  const best = new Float64Array(C).fill(Infinity);
  const scale = new Float32Array(C);
  const zeroPoint = new Int32Array(C);
  const block = Math.max(1, Math.min(steps, Math.floor(maxElements / site.w.length)));
  const scalars = { qmin: f32([], [qmin]), qmax: f32([], [qmax]), p: f32([], [p]) };
  const w = f32([outer, C, inner], site.w);
  for (let k0 = 0; k0 < steps; k0 += block) {
    const R = Math.min(block, steps - k0);
    const s = new Float32Array(R * C);
    const z = new Float32Array(R * C);
    for (let r = 0; r < R; r++) {
      // the same ratios, in the same order, as calibrateWeight: ties keep the earlier (wider) range
      const ratio = clipRatio(k0 + r, steps, minRatio);
      for (let c = 0; c < C; c++) {
        const cand = paramsForRange(min[c]! * ratio, max[c]! * ratio, spec);
        s[r * C + c] = cand.scale;
        z[r * C + c] = cand.zeroPoint;
      }
    }
    const out = await session.run({ w, scale: f32([R, 1, C, 1], s), zero_point: f32([R, 1, C, 1], z), ...scalars });
    const err = out['err']!.data as Float32Array;
    for (let r = 0; r < R; r++) {
      for (let c = 0; c < C; c++) {
        const e = err[r * C + c]!;
        if (e < best[c]!) { best[c] = e; scale[c] = s[r * C + c]!; zeroPoint[c] = z[r * C + c]!; }
      }
    }
  }
  return { spec, scale, zeroPoint };
}

/**
 * Quantizer parameters of every site, as calibrateWeight would give them (MinMax directly; Lp by
 * the search above, one onnxruntime session for all sites). Float32 error sums may break a near-tie
 * differently from calibrateWeight's float64 ones; the chosen errors then agree to rounding.
 */
export async function calibrateWeightsOrt(sites: readonly WeightTensor[], opts: WeightCalibOptions, maxElements = MAX_ELEMENTS): Promise<QuantParams[]> {
  const empty = sites.find((x) => x.w.length === 0);
  if (empty) throw new TtaqError('QUANT_BAD_MODEL', 'cannot calibrate an empty weight tensor; remove the layer or give it weights');
  if (opts.method === 'minmax' || sites.length === 0) return sites.map((x) => calibrateWeight(x.w, x.dims, x.spec, opts));
  const session = await createSession(errorModel(), { source: 'the weight Lp search' });
  try {
    const out: QuantParams[] = [];
    for (const site of sites) out.push(await searchOne(session, site, opts, maxElements));
    return out;
  } finally {
    await session.release();
  }
}
