// `ttaq quantize` refuses a named choice it does not know before loading anything, naming the flag
// and the values it takes, and checks where it will write before the long work starts. Image
// folders of several sizes calibrate and evaluate, resized as the model's preprocessing says.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { run } from '../../tools/quantize.ts';

const base = ['--model', 'no/such/model.onnx', '--calib', 'fashion-mnist', '--w-bits', '4', '--a-bits', '4', '--out', 'never.onnx', '--quiet'];

test('an unknown --step-owner or --preset is a usage error that lists the choices (the missing model is never read)', async () => {
  for (const [flag, value, choices] of [['--step-owner', 'sideways', 'producer | consumer'], ['--preset', 'huge', 'fast | default | paper']] as const) {
    await assert.rejects(run([...base, flag, value]), (e: unknown) => isTtaqError(e) && e.code === 'CLI_USAGE' && e.message.includes(`${flag} '${value}'`) && e.message.includes(choices));
  }
});

test('--variant-images takes a whole number or all, before anything loads', async () => {
  for (const value of ['some', '-3', '2.5']) {
    await assert.rejects(run([...base, `--variant-images=${value}`]), (e: unknown) => isTtaqError(e) && e.code === 'CLI_USAGE' && e.message.includes(`--variant-images '${value}'`));
  }
  // accepted values get as far as the missing model
  for (const value of ['all', '0', '500']) {
    await assert.rejects(run([...base, '--variant-images', value]), (e: unknown) => !(isTtaqError(e) && e.code === 'CLI_USAGE'));
  }
});

test('--out that is a folder is refused before any data loads; missing folders above --out and --state are made', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-qcli-'));
  try {
    const folder = join(dir, 'looks-like.onnx');
    mkdirSync(folder);
    const model = ['--model', 'models/resnet20-fmnist.onnx', '--calib', 'no/such/dataset', '--w-bits', '4', '--a-bits', '4', '--quiet'];
    await assert.rejects(run([...model, '--out', folder]), (e: unknown) => isTtaqError(e) && e.code === 'CLI_USAGE' && e.message.includes('is a folder'));
    // a good --out in folders that do not exist: they are made, and the run gets as far as the data
    const out = join(dir, 'a', 'b', 'q.onnx');
    const state = join(dir, 'elsewhere', 'q.state.json');
    await assert.rejects(run([...model, '--out', out, '--state', state]), (e: unknown) => isTtaqError(e) && e.code === 'DATA_NOT_FOUND');
    assert.ok(statSync(join(dir, 'a', 'b')).isDirectory());
    assert.ok(statSync(join(dir, 'elsewhere')).isDirectory());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('numbers and named choices are checked before anything loads, by their flags', async () => {
  const cases: [string[], RegExp][] = [
    [['--eval-limit', '0'], /--eval-limit 0: expected an integer >= 1/],
    [['--calib-images', '100.5'], /--calib-images 100.5: expected an integer >= 1/],
    [['--threads', '0'], /--threads 0: expected an integer >= 1/],
    [['--workers', '3.5'], /--workers 3.5: expected an integer >= 1/],
    [['--method', 'ttak'], /--method 'ttak' is not one of .*ttaq/],
    [['--act-calib', 'percentil'], /--act-calib 'percentil' is not one of minmax \| percentile \| mse/],
  ];
  for (const [flags, message] of cases) {
    await assert.rejects(run([...base, ...flags]), (e: unknown) => isTtaqError(e) && e.code === 'CLI_USAGE' && message.test(e.message), flags.join(' '));
  }
  // the method's own rules and the first/last widths are checked as early
  await assert.rejects(run([...base, '--method', 'mse', '--pem', '1']), (e: unknown) => isTtaqError(e) && e.code === 'CONFIG_INVALID' && /PEM and PCR act during block reconstruction/.test(e.message));
  await assert.rejects(run([...base, '--first-last', '5']), (e: unknown) => isTtaqError(e) && e.code === 'QUANT_BAD_BITS' && /--first-last/.test(e.message));
});

/** The bundled model and its manifest copied into a fresh folder (a model the test may lose). */
function copiedModel(dir: string, name = 'net.onnx'): string {
  const path = join(dir, name);
  copyFileSync('models/resnet20-fmnist.onnx', path);
  copyFileSync('models/resnet20-fmnist.manifest.json', join(dir, name.replace(/\.onnx$/, '.manifest.json')));
  return path;
}

test('an output that would land on the input model or its manifest is refused, and the input is left as it was', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-qcli-'));
  try {
    const model = copiedModel(dir);
    const before = readFileSync(model);
    const args = (m: string, out: string) => ['--model', m, '--out', out, '--calib', 'fashion-mnist', '--w-bits', '4', '--a-bits', '4', '--quiet'];
    await assert.rejects(run(args(model, model)), (e: unknown) => isTtaqError(e) && e.code === 'CLI_USAGE' && /--out '.*net\.onnx' would overwrite the input model/.test(e.message) && e.message.includes('net-w4a4.onnx'));
    // written as another path to the same file
    await assert.rejects(run(args(model, join(dir, '.', 'x', '..', 'net.onnx'))), (e: unknown) => isTtaqError(e) && /would overwrite the input model/.test(e.message));
    // the INT8 variant of --out is the input
    const int8 = copiedModel(dir, 'q.int8.onnx');
    await assert.rejects(run(args(int8, join(dir, 'q.onnx'))), (e: unknown) => isTtaqError(e) && /the INT8-container variant '.*q\.int8\.onnx' would overwrite the input model/.test(e.message));
    assert.deepEqual(readFileSync(model), before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a manifest that does not fit the model is refused before the data loads; a split Fashion-MNIST lacks too', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-qcli-'));
  try {
    const model = copiedModel(dir);
    const manifestPath = join(dir, 'net.manifest.json');
    const good = JSON.parse(readFileSync(manifestPath, 'utf8')) as { labels: string[]; preprocess: { channels: number } };
    const args = ['--model', model, '--out', join(dir, 'q.onnx'), '--calib', 'no/such/data', '--w-bits', '4', '--a-bits', '4', '--quiet'];
    writeFileSync(manifestPath, JSON.stringify({ ...good, labels: good.labels.slice(0, 5) }));
    await assert.rejects(run(args), (e: unknown) => isTtaqError(e) && e.code === 'MANIFEST_INVALID' && /lists 5 labels, but the model's output '.*' has 10 classes/.test(e.message));
    writeFileSync(manifestPath, JSON.stringify({ ...good, preprocess: { ...good.preprocess, channels: 3 } }));
    await assert.rejects(run(args), (e: unknown) => isTtaqError(e) && e.code === 'MANIFEST_INVALID' && /makes 3x28x28 .* images, but the model's input/.test(e.message));
    writeFileSync(manifestPath, JSON.stringify(good));
    // the manifest fits: the run gets as far as the data
    await assert.rejects(run(args), (e: unknown) => isTtaqError(e) && e.code === 'DATA_NOT_FOUND');
    const typo = [...args.slice(0, 5), 'fashion-mnist:tset', ...args.slice(6)];
    await assert.rejects(run(typo), (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_SPEC' && /splits 'train' and 'test', not 'tset'/.test(e.message));
    // every output is tried before the run: the INT8 variant's path is a folder
    mkdirSync(join(dir, 'q.int8.onnx'));
    await assert.rejects(run(args), (e: unknown) => isTtaqError(e) && e.code === 'CLI_USAGE' && /the INT8-container variant '.*q\.int8\.onnx' is a folder/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Runs the command with stdout and stderr captured. */
async function captured(argv: string[]): Promise<{ rc: number; out: string; err: string }> {
  const [w1, w2] = [process.stdout.write, process.stderr.write];
  let out = '';
  let err = '';
  process.stdout.write = ((x: string | Uint8Array) => { out += String(x); return true; }) as typeof process.stdout.write;
  process.stderr.write = ((x: string | Uint8Array) => { err += String(x); return true; }) as typeof process.stderr.write;
  try {
    return { rc: await run(argv), out, err };
  } finally {
    process.stdout.write = w1;
    process.stderr.write = w2;
  }
}

test('image folders of several sizes calibrate and evaluate: each image resized to the model\'s input, one note per folder', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-qcli-'));
  try {
    const model = copiedModel(dir);
    const sizes = [[28, 28], [40, 30], [20, 24], [56, 56]] as const;
    const png = async (path: string, k: number) => {
      const [h, w] = sizes[k % sizes.length]!;
      const px = Buffer.from(Array.from({ length: h * w }, (_, i) => ((i % w) * 7 + Math.floor(i / w) * (k + 3)) % 256));
      writeFileSync(path, await sharp(px, { raw: { width: w, height: h, channels: 1 } }).png().toBuffer());
    };
    mkdirSync(join(dir, 'frames'));
    for (let k = 0; k < 20; k++) await png(join(dir, 'frames', `${k}.png`), k);
    for (const c of ['0', '1']) {
      mkdirSync(join(dir, 'eval', c), { recursive: true });
      for (let k = 0; k < 3; k++) await png(join(dir, 'eval', c, `${k}.png`), k + 4 * Number(c));
    }
    const r = await captured(['--model', model, '--calib', join(dir, 'frames'), '--eval', join(dir, 'eval'), '--w-bits', '4', '--a-bits', '4', '--method', 'minmax', '--min-calib', '16', '--out', join(dir, 'q.onnx')]);
    assert.equal(r.rc, 0, r.err);
    const notes = r.err.split('\n').filter((l) => l.startsWith('note:') && l.includes('resized'));
    assert.deepEqual(notes, [
      `note: --calib ${join(dir, 'frames')}: 15 of 20 images resized from other sizes (5 of 40x30, 5 of 20x24, 5 of 56x56) to the model's 28x28 (stretch, as its preprocessing resizes camera frames)`,
      `note: --eval ${join(dir, 'eval')}: 4 of 6 images resized from other sizes (2 of 40x30, 2 of 20x24) to the model's 28x28 (stretch, as its preprocessing resizes camera frames)`,
    ]);
    assert.match(r.out, /accuracy on 6 eval set: FP32 /);
    assert.ok(statSync(join(dir, 'q.onnx')).size > 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
