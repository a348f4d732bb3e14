// The package's public surface: what a program gets from `import … from 'ttaq'`.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { test } from 'node:test';

test("'ttaq' gives the entry points and each module as a namespace; 'ttaq/sdk/<module>' one module", async () => {
  const sdk = await import('ttaq');
  for (const name of ['quantize', 'Adapter', 'TelemetryClient', 'loadModel', 'createSession', 'evaluate', 'runTraining', 'TtaqError'] as const) {
    assert.equal(typeof sdk[name], 'function', name);
  }
  assert.equal(sdk.quant.quantize, sdk.quantize);
  assert.equal(typeof sdk.autodiff.buildGradientGraph, 'function');
  const telemetry = await import('ttaq/sdk/telemetry');
  assert.equal(telemetry.TelemetryClient, sdk.TelemetryClient);
});

test('the bundled model is found by an absolute path, whatever the working directory', async () => {
  const { DEFAULT_MODEL_PATH, bundledModelPath, manifestPathFor } = await import('ttaq');
  assert.ok(isAbsolute(DEFAULT_MODEL_PATH));
  for (const p of [DEFAULT_MODEL_PATH, bundledModelPath('mobilenet-fmnist')]) {
    assert.ok(existsSync(p), p);
    assert.ok(existsSync(manifestPathFor(p)), manifestPathFor(p));
  }
});
