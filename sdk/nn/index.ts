// sdk/nn: the bundled model definitions, built as graph IR. One definition gives both the
// training form (BN on batch statistics, batch mean/variance as extra outputs) and the inference
// form (BN on running statistics, never folded), with identical parameter names and initial
// values for a given seed.
import { TtaqError } from '../errors/index.ts';
import type { Dim, Model, Tensor } from '../onnx/types.ts';
import { Layers, type BnInfo, type BnTraining, type Form, type ParamInfo } from './layers.ts';
import { mobilenet, type MobileNetOptions } from './mobilenet.ts';
import { resnet, type ResNetOptions } from './resnet.ts';
import { Rng } from './rng.ts';

export { Rng, type RngState } from './rng.ts';
export { DEFAULT_BN_EPSILON, OPSET, type Act, type BnInfo, type BnTraining, type Form, type ParamInfo, type ParamKind } from './layers.ts';
export type { MobileNetOptions, IrStage } from './mobilenet.ts';
export type { ResNetOptions } from './resnet.ts';

export const ARCHS = ['resnet20', 'mobilenet'] as const;
export type Arch = (typeof ARCHS)[number];

export interface NetSpec {
  readonly arch: Arch;
  /** Input channels (default 1). */
  readonly channels?: number;
  /** Input height and width (default 28). */
  readonly height?: number;
  readonly width?: number;
  /** Default 10. */
  readonly numClasses?: number;
  /** Batch dimension: a number, or a symbolic name (default 'N'). */
  readonly batch?: Dim;
  /** Seed of the parameter initialisation (default 0). */
  readonly seed?: number;
  /** How BN is written in the training form (default 'op'). */
  readonly bnTraining?: BnTraining;
  readonly resnet?: ResNetOptions;
  readonly mobilenet?: MobileNetOptions;
}

export interface BuiltNet {
  readonly model: Model;
  readonly form: Form;
  readonly input: string;
  /** The logits output, [batch, numClasses]. */
  readonly output: string;
  /** Trainable parameters (initializer names), in definition order. */
  readonly params: readonly ParamInfo[];
  /** BatchNormalization layers in definition order, with their running-statistics initializers. */
  readonly bns: readonly BnInfo[];
  /** Multiply-accumulates of one forward pass, per image. */
  readonly macs: number;
}

export const INPUT_NAME = 'input';
export const LOGITS_NAME = 'logits';

/** Builds a bundled architecture in the requested form. */
export function buildNet(spec: NetSpec, form: Form): BuiltNet {
  const c = spec.channels ?? 1;
  const h = spec.height ?? 28;
  const w = spec.width ?? 28;
  const k = spec.numClasses ?? 10;
  const batch = spec.batch ?? 'N';
  for (const [key, v] of [['channels', c], ['height', h], ['width', w], ['numClasses', k]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new TtaqError('CONFIG_INVALID', `network spec: ${key} must be a positive integer, got ${v}`);
  }
  if (h < 8 || w < 8) throw new TtaqError('CONFIG_INVALID', `network spec: input ${h}x${w} is too small for two stride-2 stages; use at least 8x8`);
  const L = new Layers({ form, rng: new Rng(spec.seed ?? 0), bnTraining: spec.bnTraining ?? 'op' });
  const x = L.input(INPUT_NAME, batch, c, h, w);
  let out;
  if (spec.arch === 'resnet20') out = resnet(L, x, k, LOGITS_NAME, spec.resnet);
  else if (spec.arch === 'mobilenet') out = mobilenet(L, x, k, LOGITS_NAME, spec.mobilenet);
  else throw new TtaqError('CONFIG_INVALID', `unknown architecture '${String(spec.arch)}'; choose one of ${ARCHS.join(', ')}`);
  const model = L.model(out, batch, `ttaq ${spec.arch} (${form} form)`, { 'ttaq.arch': spec.arch, 'ttaq.form': form });
  return { model, form, input: INPUT_NAME, output: LOGITS_NAME, params: L.params, bns: L.bns, macs: L.macs };
}

/** Number of trainable parameters and of BN running-statistics values. */
export function countParams(net: BuiltNet): { trainable: number; buffers: number } {
  const trainable = net.params.reduce((s, p) => s + p.dims.reduce((a, b) => a * b, 1), 0);
  return { trainable, buffers: net.bns.reduce((s, b) => s + 2 * b.channels, 0) };
}

/**
 * Returns the model with initializers replaced by `values` (parameters and/or BN running
 * statistics). Every value must name an existing initializer of the same shape.
 */
export function withInitializers(model: Model, values: ReadonlyMap<string, Tensor>): Model {
  const inits = new Map(model.graph.initializers);
  for (const [name, t] of values) {
    const old = inits.get(name);
    if (!old) throw new TtaqError('STATE_MISMATCH', `no initializer '${name}' in model '${model.graph.name}'; the values come from another architecture or version`);
    if (old.dims.length !== t.dims.length || old.dims.some((d, i) => d !== t.dims[i]) || old.dtype !== t.dtype) {
      throw new TtaqError('STATE_MISMATCH', `initializer '${name}': model has ${old.dtype}[${old.dims.join(',')}], value is ${t.dtype}[${t.dims.join(',')}]; the values come from another architecture or version`);
    }
    inits.set(name, t);
  }
  return { ...model, graph: { ...model.graph, initializers: inits } };
}
