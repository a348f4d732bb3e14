// `ttaq quantize` refuses a named choice it does not know before loading anything, naming the flag
// and the values it takes.
import assert from 'node:assert/strict';
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
