// Export of a trained network: the inference form (BN kept as BatchNormalization nodes, never
// folded) as ONNX bytes plus its manifest (sdk/manifest) beside it.
import { basename } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { TtaqError } from '../errors/index.ts';
import { ManifestSchema, manifestPathFor, sha256Hex, writeManifest, type Manifest } from '../manifest/index.ts';
import { encodeModel } from '../onnx/codec.ts';
import type { Model } from '../onnx/types.ts';

export interface ExportInfo {
  readonly name: string;
  readonly labels: readonly string[];
  readonly channels: 1 | 3;
  readonly height: number;
  readonly width: number;
  readonly mean: readonly number[];
  readonly std: readonly number[];
  readonly bnNodes: readonly string[];
  readonly command?: string;
  readonly dataset?: string;
  readonly metrics?: Readonly<Record<string, number>>;
}

/** Builds the manifest of `bytes` saved as `modelFile`. Input batch is dynamic (-1). */
export function manifestFor(modelFile: string, bytes: Uint8Array, model: Model, info: ExportInfo): Manifest {
  const input = model.graph.inputs[0];
  const output = model.graph.outputs[0];
  if (!input || !output) throw new TtaqError('INTERNAL', `export: model '${model.graph.name}' has no input or output`);
  return ManifestSchema.parse({
    format: 'ttaq-manifest/1',
    name: info.name,
    model: basename(modelFile),
    sha256: sha256Hex(bytes),
    input: { name: input.name, shape: [-1, info.channels, info.height, info.width] },
    output: { name: output.name },
    labels: [...info.labels],
    preprocess: {
      height: info.height, width: info.width, channels: info.channels, resize: 'stretch',
      mean: [...info.mean], std: [...info.std], layout: 'NCHW',
    },
    adaptation: { bnNodes: [...info.bnNodes] },
    provenance: {
      ...(info.command ? { command: info.command } : {}),
      ...(info.dataset ? { dataset: info.dataset } : {}),
      metrics: { ...(info.metrics ?? {}) },
      createdAt: new Date().toISOString(),
    },
  });
}

/** Writes `<path>` (ONNX) and `<path without .onnx>.manifest.json`; returns the manifest. */
export async function exportModel(path: string, model: Model, info: ExportInfo): Promise<{ manifest: Manifest; manifestPath: string }> {
  if (!path.endsWith('.onnx')) throw new TtaqError('CLI_USAGE', `export path '${path}' must end in .onnx (the manifest goes beside it as .manifest.json)`);
  const bytes = encodeModel(model);
  try {
    await writeFile(path, bytes);
  } catch (e) {
    throw new TtaqError('CONFIG_INVALID', `cannot write model '${path}': ${(e as Error).message}; check that the folder exists and is writable`, { path }, { cause: e });
  }
  const manifest = manifestFor(path, bytes, model, info);
  const manifestPath = manifestPathFor(path);
  await writeManifest(manifestPath, manifest);
  return { manifest, manifestPath };
}
