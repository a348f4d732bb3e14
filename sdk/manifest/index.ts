// The model manifest: the JSON file beside every model ttaq produces or ships
// (`<model>.onnx` + `<model>.manifest.json`). It tells every consumer (eval, quantizer, agent) how to
// feed the model and what it holds. One zod schema (schema.ts) is the single source of truth.
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { TtaqError } from '../errors/index.ts';
import { ManifestSchema, type Manifest } from './schema.ts';

export { LayerQuantSchema, ManifestSchema, PreprocessSchema, type Manifest, type Preprocess } from './schema.ts';

export const manifestPathFor = (modelPath: string): string => modelPath.replace(/\.onnx$/, '') + '.manifest.json';

export const sha256Hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Parses and validates a manifest; the error names the file and the offending key. */
export function parseManifest(json: unknown, source = 'manifest'): Manifest {
  const r = ManifestSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new TtaqError('MANIFEST_INVALID', `${source}: '${issue.path.join('.') || '(root)'}' ${issue.message}; fix that key (see docs/ARCHITECTURE.md, model manifest)`, { path: issue.path });
  }
  return r.data;
}

export async function readManifest(path: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new TtaqError('MANIFEST_INVALID', `cannot read manifest ${path}: ${(e as Error).message}; every model needs its <model>.manifest.json beside it (for a model of your own: ttaq manifest <model.onnx> --labels ... --mean ... --std ...)`, {}, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new TtaqError('MANIFEST_INVALID', `${path} is not valid JSON: ${(e as Error).message}`);
  }
  return parseManifest(json, path);
}

export async function writeManifest(path: string, m: Manifest): Promise<void> {
  await writeFile(path, JSON.stringify(ManifestSchema.parse(m), null, 2) + '\n');
}

/** Checks a model's bytes against the manifest's SHA-256. */
export function checkModelHash(m: Manifest, modelBytes: Uint8Array, source: string): void {
  const got = sha256Hex(modelBytes);
  if (got !== m.sha256) {
    throw new TtaqError('STATE_MISMATCH', `${source}: model SHA-256 ${got.slice(0, 12)}… does not match its manifest (${m.sha256.slice(0, 12)}…); regenerate the manifest or use the model it describes`);
  }
}

/** Fashion-MNIST's class names, in label order. */
export const FASHION_MNIST_LABELS = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'] as const;

export { describeModel, type DescribeInput, type Described, type DescribedManifest } from './describe.ts';
