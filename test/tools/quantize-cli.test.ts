// `ttaq quantize` refuses a named choice it does not know before loading anything, naming the flag
// and the values it takes, and checks where it will write before the long work starts.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
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
