// `ttaq manifest <model.onnx>`: writes the manifest every other command reads, for a model ttaq did
// not produce. The graph gives names, size and class count; the user gives class names and the
// normalisation the model was trained with, which no file records.
import { existsSync, readFileSync } from 'node:fs';
import { TtaqError, unwrap } from '../sdk/errors/index.ts';
import { describeModel, manifestPathFor, parseManifest, sha256Hex, writeManifest } from '../sdk/manifest/index.ts';
import { decodeModel } from '../sdk/onnx/codec.ts';
import { readModelBytes } from '../sdk/onnx/io.ts';
import { EXIT, parseFlags, printJson } from './lib/cli.ts';

export const summary = 'write the manifest (labels, input size, normalisation) for a model of your own';

const HELP = `usage: ttaq manifest <model.onnx> --labels <names> --mean <m> --std <s> [options]

Writes <model>.manifest.json beside the model: input and output names, image size and channels
and the class count come from the graph; the rest is what only you know. Quantize, eval and the
agent read this file.

options:
  --labels <names>    class names in output order: a comma-separated list, or a file with one
                      name per line (or a JSON array)
  --mean <m[,m,m]>    per-channel mean the model was trained with, on pixels scaled to 0..1
  --std <s[,s,s]>     per-channel standard deviation, same scale; the model sees
                      (pixel / 255 - mean) / std. torchvision's ImageNet models:
                      --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
  --resize <how>      stretch | center-crop | letterbox, for camera frames of another size
                      (default stretch)
  --size <HxW>        input height and width, only for a graph whose size is symbolic
  --name <name>       manifest name (default: the file name without .onnx)
  --force             replace an existing manifest
  --print             print the manifest instead of writing it
  --json              print the manifest and any notes as JSON
  -h, --help          this text

exit codes: 0 written, 1 failed, 2 bad usage or a model ttaq cannot feed`;

const RESIZES = ['stretch', 'center-crop', 'letterbox'] as const;
const isResize = (s: string): s is (typeof RESIZES)[number] => (RESIZES as readonly string[]).includes(s);

const numbers = (text: string, flag: string): number[] => {
  const v = text.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (v.length === 0 || v.some((x) => !Number.isFinite(x))) throw new TtaqError('CLI_USAGE', `${flag} '${text}': expected numbers separated by commas, e.g. ${flag} 0.5 or ${flag} 0.485,0.456,0.406`);
  return v;
};

/** Labels from a file (a JSON array, or one per line) when the value names one, else a comma list. */
function readLabels(value: string): string[] {
  if (!existsSync(value)) return value.split(',').map((s) => s.trim()).filter(Boolean);
  const text = readFileSync(value, 'utf8');
  if (value.endsWith('.json')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new TtaqError('CLI_USAGE', `--labels ${value} is not valid JSON (${(e as Error).message}); give a JSON array of names or a text file with one name per line`);
    }
    if (!Array.isArray(parsed) || parsed.some((x) => typeof x !== 'string')) throw new TtaqError('CLI_USAGE', `--labels ${value}: expected a JSON array of strings`);
    return parsed as string[];
  }
  return text.split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseFlags(argv, {
    labels: { type: 'string' }, mean: { type: 'string' }, std: { type: 'string' }, resize: { type: 'string' },
    size: { type: 'string' }, name: { type: 'string' }, force: { type: 'boolean' }, print: { type: 'boolean' }, json: { type: 'boolean' },
  }, HELP);
  if (!parsed) return EXIT.ok;
  const f = parsed.values;
  const path = parsed.positionals[0];
  if (!path || parsed.positionals.length > 1) throw new TtaqError('CLI_USAGE', `give one model file\n\n${HELP}`);
  if (!path.endsWith('.onnx')) throw new TtaqError('CLI_USAGE', `'${path}' should be an .onnx file (the manifest is named after it)`);
  for (const k of ['labels', 'mean', 'std'] as const) {
    if (f[k] === undefined) throw new TtaqError('CLI_USAGE', `--${k} is required: ${k === 'labels' ? 'the class names, in output order' : 'the normalisation the model was trained with (see --help)'}`);
  }
  const resize = f.resize ?? 'stretch';
  if (!isResize(resize)) throw new TtaqError('CLI_USAGE', `--resize '${resize}' is not one of ${RESIZES.join(' | ')}`);
  let size: [number, number] | undefined;
  if (f.size !== undefined) {
    const m = /^(\d+)x(\d+)$/.exec(f.size);
    if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new TtaqError('CLI_USAGE', `--size '${f.size}': expected HEIGHTxWIDTH, e.g. 224x224`);
    size = [Number(m[1]), Number(m[2])];
  }
  const target = manifestPathFor(path);
  if (!f.print && existsSync(target) && !f.force) {
    throw new TtaqError('CLI_USAGE', `${target} exists; pass --force to replace it, or --print to see the new one`);
  }
  const bytes = await readModelBytes(path);
  const d = describeModel(path, sha256Hex(bytes), unwrap(decodeModel(bytes, `'${path}'`)), {
    labels: readLabels(f.labels!), mean: numbers(f.mean!, '--mean'), std: numbers(f.std!, '--std'),
    resize, ...(size ? { size } : {}), ...(f.name ? { name: f.name } : {}),
  });
  if (!d.ok) throw new TtaqError('CLI_USAGE', `${path}: ${d.problem}`);
  // the same schema every reader applies: what is written here is what they accept
  const manifest = parseManifest(d.manifest, `manifest for ${path}`);
  if (!f.print) await writeManifest(target, manifest);
  if (f.json) {
    printJson({ manifest, notes: d.notes, written: f.print ? null : target });
  } else if (f.print) {
    process.stdout.write(JSON.stringify(manifest, null, 2) + '\n');
    for (const n of d.notes) process.stderr.write(`note: ${n}\n`);
  } else {
    const p = manifest.preprocess;
    process.stdout.write(`wrote ${target}: input '${manifest.input.name}' ${p.channels}x${p.height}x${p.width}, output '${manifest.output.name}', ${manifest.labels.length} classes\n`);
    for (const n of d.notes) process.stdout.write(`note: ${n}\n`);
  }
  return EXIT.ok;
}
