// Layer-level helpers over GraphBuilder for the bundled model definitions. One definition builds
// both forms: 'train' (BatchNormalization on batch statistics, which it also outputs so the
// training loop can update running statistics) and 'infer' (BatchNormalization on running
// statistics). Parameters are drawn from a seeded PRNG in a fixed order, so the same seed gives
// the same initial parameters in both forms. Activation shapes are tracked statically (C, H, W),
// which also gives the multiply-accumulate count.
import { TtaqError } from '../errors/index.ts';
import { A, GraphBuilder } from '../onnx/builder.ts';
import { f32, makeTensor, numel } from '../onnx/tensor.ts';
import type { Dim, Model } from '../onnx/types.ts';
import type { Rng } from './rng.ts';

export type Form = 'train' | 'infer';

/**
 * How BN is expressed in the training form: 'op' is one BatchNormalization node with
 * training_mode = 1 and momentum = 0 (so its 2nd/3rd outputs are the batch mean and population
 * variance); 'decomposed' spells it out with ReduceMean/Sub/Mul/Sqrt (for gradient engines
 * without a BatchNormalization rule).
 */
export type BnTraining = 'op' | 'decomposed';

/** An activation: value name and its static per-sample shape. */
export interface Act {
  readonly name: string;
  readonly c: number;
  readonly h: number;
  readonly w: number;
}

export type ParamKind = 'conv' | 'gemm' | 'gemm-bias' | 'bn-scale' | 'bn-bias';

export interface ParamInfo {
  readonly name: string;
  readonly kind: ParamKind;
  readonly dims: readonly number[];
}

export interface BnInfo {
  /** The BatchNormalization node's name (in the inference form; the training form's 'op' too). */
  readonly node: string;
  readonly channels: number;
  /** Values per channel per sample (H * W): the batch statistics average over N * spatial values. */
  readonly spatial: number;
  readonly scale: string;
  readonly bias: string;
  readonly mean: string;
  readonly var: string;
  /** Training form only: graph outputs holding the batch mean and population variance. */
  readonly batchMean: string;
  readonly batchVar: string;
}

export interface LayersOptions {
  readonly form: Form;
  readonly rng: Rng;
  readonly bnTraining?: BnTraining;
  readonly bnEpsilon?: number;
}

export const DEFAULT_BN_EPSILON = 1e-5;

export class Layers {
  readonly g = new GraphBuilder('net');
  readonly params: ParamInfo[] = [];
  readonly bns: BnInfo[] = [];
  macs = 0;
  readonly form: Form;
  readonly bnTraining: BnTraining;
  readonly eps: number;
  private readonly rng: Rng;
  private readonly names = new Set<string>();

  constructor(opts: LayersOptions) {
    this.form = opts.form;
    this.rng = opts.rng;
    this.bnTraining = opts.bnTraining ?? 'op';
    this.eps = opts.bnEpsilon ?? DEFAULT_BN_EPSILON;
  }

  private claim(name: string): void {
    if (this.names.has(name)) throw new TtaqError('INTERNAL', `model definition uses the layer name '${name}' twice; layer names must be unique`);
    this.names.add(name);
  }

  input(name: string, batch: Dim, c: number, h: number, w: number): Act {
    this.g.input(name, 'float32', [batch, c, h, w]);
    return { name, c, h, w };
  }

  /** Conv without bias (a BN follows), Kaiming-normal weights (fan-in, gain sqrt 2). */
  conv(x: Act, name: string, o: { out: number; k: number; stride?: number; groups?: number }): Act {
    this.claim(name);
    const stride = o.stride ?? 1;
    const groups = o.groups ?? 1;
    const pad = (o.k - 1) >> 1;
    if (x.c % groups !== 0 || o.out % groups !== 0) {
      throw new TtaqError('INTERNAL', `conv '${name}': channels ${x.c} -> ${o.out} not divisible by groups ${groups}`);
    }
    const cinPerGroup = x.c / groups;
    const dims = [o.out, cinPerGroup, o.k, o.k];
    const fanIn = cinPerGroup * o.k * o.k;
    const std = Math.sqrt(2 / fanIn);
    const data = new Float32Array(numel(dims));
    for (let i = 0; i < data.length; i++) data[i] = this.rng.normal() * std;
    const wName = this.g.initializer(`${name}.weight`, makeTensor('float32', dims, data));
    this.params.push({ name: wName, kind: 'conv', dims });
    const h = Math.floor((x.h + 2 * pad - o.k) / stride) + 1;
    const w = Math.floor((x.w + 2 * pad - o.k) / stride) + 1;
    const y = this.g.op1('Conv', [x.name, wName], {
      kernel_shape: A.ints([o.k, o.k]), strides: A.ints([stride, stride]), pads: A.ints([pad, pad, pad, pad]),
      group: A.int(groups), dilations: A.ints([1, 1]),
    }, { name, outputNames: [`${name}.out`] });
    this.macs += o.out * h * w * fanIn;
    return { name: y, c: o.out, h, w };
  }

  /** BatchNormalization, gamma 1, beta 0, running mean 0, running variance 1. */
  bn(x: Act, name: string): Act {
    this.claim(name);
    const c = x.c;
    const scale = this.g.initializer(`${name}.scale`, f32([c], new Float32Array(c).fill(1)));
    const bias = this.g.initializer(`${name}.bias`, f32([c], new Float32Array(c)));
    const mean = this.g.initializer(`${name}.mean`, f32([c], new Float32Array(c)));
    const vr = this.g.initializer(`${name}.var`, f32([c], new Float32Array(c).fill(1)));
    this.params.push({ name: scale, kind: 'bn-scale', dims: [c] }, { name: bias, kind: 'bn-bias', dims: [c] });
    const info: BnInfo = { node: name, channels: c, spatial: x.h * x.w, scale, bias, mean, var: vr, batchMean: `${name}.batch_mean`, batchVar: `${name}.batch_var` };
    this.bns.push(info);
    const out = `${name}.out`;
    if (this.form === 'infer') {
      this.g.op('BatchNormalization', [x.name, scale, bias, mean, vr], { epsilon: A.float(this.eps), momentum: A.float(0.9) }, { name, outputNames: [out] });
    } else if (this.bnTraining === 'op') {
      this.g.op('BatchNormalization', [x.name, scale, bias, mean, vr],
        { epsilon: A.float(this.eps), momentum: A.float(0), training_mode: A.int(1) },
        { name, outputNames: [out, info.batchMean, info.batchVar] });
      this.g.output(info.batchMean, 'float32', [c]);
      this.g.output(info.batchVar, 'float32', [c]);
    } else {
      const g = this.g;
      const axes = { axes: A.ints([0, 2, 3]), keepdims: A.int(1) };
      const m = g.op1('ReduceMean', [x.name], axes, { name: `${name}.mean_op`, outputNames: [`${name}.batch_mean4`] });
      const d = g.op1('Sub', [x.name, m], {}, { name: `${name}.center` });
      const d2 = g.op1('Mul', [d, d], {}, { name: `${name}.square` });
      const v = g.op1('ReduceMean', [d2], axes, { name: `${name}.var_op`, outputNames: [`${name}.batch_var4`] });
      const inv = g.op1('Reciprocal', [g.op1('Sqrt', [g.op1('Add', [v, g.scalar(this.eps)])])]);
      const shape = g.ints([1, c, 1, 1]);
      const s4 = g.op1('Reshape', [scale, shape]);
      const b4 = g.op1('Reshape', [bias, shape]);
      const k = g.op1('Mul', [inv, s4]);
      g.op1('Add', [g.op1('Mul', [d, k], {}, { name: `${name}.scale_op` }), b4], {}, { name, outputNames: [out] });
      g.op1('Reshape', [m, g.ints([c])], {}, { outputNames: [info.batchMean] });
      g.op1('Reshape', [v, g.ints([c])], {}, { outputNames: [info.batchVar] });
      g.output(info.batchMean, 'float32', [c]);
      g.output(info.batchVar, 'float32', [c]);
    }
    return { ...x, name: out };
  }

  relu(x: Act, name: string): Act {
    return { ...x, name: this.g.op1('Relu', [x.name], {}, { name, outputNames: [`${name}.out`] }) };
  }

  /** ReLU6 as Clip(x, 0, 6). */
  relu6(x: Act, name: string): Act {
    const y = this.g.op1('Clip', [x.name, this.g.scalar(0), this.g.scalar(6)], {}, { name, outputNames: [`${name}.out`] });
    return { ...x, name: y };
  }

  add(a: Act, b: Act, name: string): Act {
    if (a.c !== b.c || a.h !== b.h || a.w !== b.w) {
      throw new TtaqError('INTERNAL', `residual add '${name}': shapes [${a.c},${a.h},${a.w}] and [${b.c},${b.h},${b.w}] differ`);
    }
    return { ...a, name: this.g.op1('Add', [a.name, b.name], {}, { name, outputNames: [`${name}.out`] }) };
  }

  /** Global average pool to [N, C]. */
  globalPool(x: Act, name: string): Act {
    const p = this.g.op1('GlobalAveragePool', [x.name], {}, { name, outputNames: [`${name}.out`] });
    const f = this.g.op1('Flatten', [p], { axis: A.int(1) }, { name: `${name}.flatten`, outputNames: [`${name}.flat`] });
    return { name: f, c: x.c, h: 1, w: 1 };
  }

  /** Fully connected head: Gemm with weight [out, in] (transB), PyTorch-style uniform init. */
  linear(x: Act, name: string, out: number, outputName: string): Act {
    this.claim(name);
    const fanIn = x.c * x.h * x.w;
    const bound = 1 / Math.sqrt(fanIn);
    const wd = new Float32Array(out * fanIn);
    for (let i = 0; i < wd.length; i++) wd[i] = (this.rng.uniform() * 2 - 1) * bound;
    const bd = new Float32Array(out);
    for (let i = 0; i < bd.length; i++) bd[i] = (this.rng.uniform() * 2 - 1) * bound;
    const wName = this.g.initializer(`${name}.weight`, makeTensor('float32', [out, fanIn], wd));
    const bName = this.g.initializer(`${name}.bias`, makeTensor('float32', [out], bd));
    this.params.push({ name: wName, kind: 'gemm', dims: [out, fanIn] }, { name: bName, kind: 'gemm-bias', dims: [out] });
    const y = this.g.op1('Gemm', [x.name, wName, bName], { transB: A.int(1) }, { name, outputNames: [outputName] });
    this.macs += out * fanIn;
    return { name: y, c: out, h: 1, w: 1 };
  }

  /** Wraps the graph into a Model (opset 17: BatchNormalization training_mode, ReduceMean axes attribute). */
  model(output: Act, batch: Dim, docString: string, metadata: Record<string, string>): Model {
    this.g.output(output.name, 'float32', [batch, output.c]);
    const graph = this.g.build();
    return {
      irVersion: 8,
      opsetImports: [{ domain: '', version: OPSET }],
      producerName: 'ttaq',
      producerVersion: '0.1.0',
      docString,
      metadata,
      graph: { ...graph, outputs: [graph.outputs.at(-1)!, ...graph.outputs.slice(0, -1)] },
    };
  }
}

export const OPSET = 17;
