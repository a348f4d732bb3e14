// A manifest for a model ttaq did not produce (an FP32 classifier exported from PyTorch, say): what
// the graph says (input and output names, image size and channels, class count) checked against
// what only the user knows (class names, the normalisation the model was trained with).
import { basename } from 'node:path';
import type { Model } from '../onnx/types.ts';
import type { Preprocess } from './schema.ts';

/** What the graph cannot tell. */
export interface DescribeInput {
  readonly labels: readonly string[];
  readonly mean: readonly number[];
  readonly std: readonly number[];
  readonly resize?: Preprocess['resize'];
  /** Height and width, needed only when the graph's are symbolic. */
  readonly size?: readonly [number, number];
  /** Defaults to the file name without `.onnx`. */
  readonly name?: string;
}

/** The manifest's fields, or the first problem found with the way out. */
export type Described =
  | { readonly ok: true; readonly manifest: DescribedManifest; readonly notes: readonly string[] }
  | { readonly ok: false; readonly problem: string };

export interface DescribedManifest {
  readonly format: 'ttaq-manifest/1';
  readonly name: string;
  readonly model: string;
  readonly sha256: string;
  readonly input: { readonly name: string; readonly shape: readonly number[] };
  readonly output: { readonly name: string };
  readonly labels: readonly string[];
  readonly preprocess: Preprocess;
  readonly adaptation: { readonly bnNodes: readonly string[] };
}

const fixed = (d: unknown): number | null => (typeof d === 'number' && d > 0 ? d : null);

/** Describes `model` (saved as `modelFile`, whose bytes hash to `sha256`) as a manifest. */
export function describeModel(modelFile: string, sha256: string, model: Model, given: DescribeInput): Described {
  const inits = model.graph.initializers;
  const inputs = model.graph.inputs.filter((i) => !inits.has(i.name));
  if (inputs.length !== 1) {
    return { ok: false, problem: `the model has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ') || 'none'}); ttaq feeds classifiers with one image input` };
  }
  const input = inputs[0]!;
  const output = model.graph.outputs[0];
  if (!output) return { ok: false, problem: 'the model has no output' };
  if (input.dtype !== 'float32') return { ok: false, problem: `input '${input.name}' is ${input.dtype}; ttaq feeds float32 NCHW images (export the FP32 model)` };
  const shape = input.shape;
  if (!shape || shape.length !== 4) {
    return { ok: false, problem: `input '${input.name}' has ${shape ? `rank ${shape.length}` : 'no shape'}; ttaq feeds NCHW images [batch, channels, height, width] (export with a 4-D input)` };
  }
  const channels = fixed(shape[1]);
  if (channels !== 1 && channels !== 3) {
    return { ok: false, problem: `input '${input.name}' has ${shape[1]} channels; ttaq feeds 1 (grayscale) or 3 (RGB) channels` };
  }
  let height = fixed(shape[2]);
  let width = fixed(shape[3]);
  const notes: string[] = [];
  if (given.size) {
    const [h, w] = given.size;
    if ((height !== null && height !== h) || (width !== null && width !== w)) {
      return { ok: false, problem: `--size ${h}x${w} disagrees with the graph's ${height ?? '?'}x${width ?? '?'} input; leave --size out for a model with a fixed size` };
    }
    [height, width] = [h, w];
  }
  if (height === null || width === null) {
    return { ok: false, problem: `input '${input.name}' has a symbolic size (${String(shape[2])} x ${String(shape[3])}); pass the size the model was trained at, e.g. --size 224x224` };
  }
  for (const [what, v] of [['mean', given.mean], ['std', given.std]] as const) {
    if (v.length !== 1 && v.length !== channels) {
      return { ok: false, problem: `--${what} has ${v.length} values for a ${channels}-channel input; give 1 or ${channels}` };
    }
  }
  if (given.std.some((s) => !(s > 0))) return { ok: false, problem: '--std values must be positive' };
  if (given.mean.some((m) => !Number.isFinite(m))) return { ok: false, problem: '--mean values must be numbers' };
  if (given.labels.length < 2) return { ok: false, problem: `${given.labels.length} label${given.labels.length === 1 ? '' : 's'}; a classifier needs at least 2 class names, in output order` };
  const classes = output.shape?.length === 2 ? fixed(output.shape[1]) : null;
  if (classes !== null && classes !== given.labels.length) {
    return { ok: false, problem: `output '${output.name}' has ${classes} classes but ${given.labels.length} labels were given; give one name per class, in output order` };
  }
  if (classes === null) notes.push(`output '${output.name}' does not state its class count; the ${given.labels.length} labels are taken as given`);
  if (!model.graph.nodes.some((n) => n.opType === 'BatchNormalization')) {
    notes.push('the graph has no BatchNormalization nodes (folded at export?): the agent cannot adapt this FP32 file as it is; ttaq quantize inserts equivalent ones from calibration data, so the models it writes can be adapted');
  }
  const batch = fixed(shape[0]);
  return {
    ok: true,
    notes,
    manifest: {
      format: 'ttaq-manifest/1',
      name: given.name ?? basename(modelFile).replace(/\.onnx$/, ''),
      model: basename(modelFile),
      sha256,
      input: { name: input.name, shape: [batch ?? -1, channels, height, width] },
      output: { name: output.name },
      labels: [...given.labels],
      preprocess: { height, width, channels, resize: given.resize ?? 'stretch', mean: [...given.mean], std: [...given.std], layout: 'NCHW' },
      adaptation: { bnNodes: [] },
    },
  };
}
