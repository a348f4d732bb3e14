// `ttaq providers`: skipped providers carry a reason naming the missing library, and the CPU row
// is the reference (zero difference to itself, a timed inference and adaptation step).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { checkProviders } from '../../tools/providers.ts';

test('providers check: a GPU provider without its library is skipped with the reason, CPU runs every check', async () => {
  const r = await checkProviders({ models: ['models/resnet20-fmnist.onnx'], providers: ['tensorrt', 'cpu'], batch: 2, reps: 1, train: false });
  assert.ok(r.available.includes('cpu'));
  assert.ok(r.backends.some((b) => b.name === 'cpu' && b.bundled));
  const trt = r.skipped.find((s) => s.provider === 'tensorrt');
  if (!r.available.includes('tensorrt')) assert.match(trt?.reason ?? '', /libonnxruntime_providers_tensorrt|no 'tensorrt' backend/);
  const cpu = r.checks.find((c) => c.provider === 'cpu');
  assert.ok(cpu, 'a CPU row');
  assert.equal(cpu.ran, 'cpu');
  assert.equal(cpu.error, undefined);
  assert.equal(cpu.adaptError, undefined);
  assert.equal(cpu.maxLogitDiff, 0);
  assert.equal(cpu.top1Agreement, 1);
  assert.ok(cpu.inferMs! > 0 && Number.isFinite(cpu.inferMs!));
  assert.ok(cpu.adaptStepMs! > 0 && Number.isFinite(cpu.adaptStepMs!));
});

test('providers check: a provider the binary does not have is reported, not thrown', async () => {
  const r = await checkProviders({ models: ['models/resnet20-fmnist.onnx'], providers: ['coreml', 'cpu'], batch: 1, reps: 1, train: false });
  assert.ok(r.skipped.some((s) => s.provider === 'coreml' && /coreml/.test(s.reason)));
  assert.deepEqual(r.checks.map((c) => c.provider), ['cpu']);
});

test('ttaq providers: a name no onnxruntime build has is bad usage (exit 2), not an empty table', () => {
  const r = spawnSync(process.execPath, ['bin/ttaq.js', 'providers', '--providers', 'cdua,cpu'], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /'cdua' is no onnxruntime execution provider; use some of tensorrt, cuda, cpu/);
});
