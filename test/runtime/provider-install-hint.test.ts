// The one command that enables CUDA on x64 Linux: the log line for a missing GPU provider and
// `ttaq providers` name it, and the docs that tell a GPU user what to run quote it word for word.
// The provider-fallback log lines docs/JETSON.md quotes are the ones the code writes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { ModelRunner } from '../../device/ports.ts';
import { buildWarmRunner } from '../../device/runner.ts';
import { loadModel } from '../../sdk/onnx/index.ts';
import { createSession, GPU_INSTALL_COMMAND, gpuInstallHint, resolveProviders, type RuntimeLogEvent } from '../../sdk/runtime/index.ts';
import { checkProviders } from '../../tools/providers.ts';

test('a skipped cuda provider names the install command; README.md and docs/JETSON.md quote the same', () => {
  const events: RuntimeLogEvent[] = [];
  assert.deepEqual(resolveProviders(['cuda', 'cpu'], ['cpu'], (e) => events.push(e)), ['cpu']);
  assert.equal(events.length, 1);
  assert.ok(events[0]!.message.includes(`'${GPU_INSTALL_COMMAND}'`), events[0]!.message);
  assert.ok(events[0]!.message.includes(gpuInstallHint('cuda')!), 'the log line carries the shared hint');
  assert.match(events[0]!.message, /^provider 'cuda' skipped: .*; trying 'cpu'$/);
  for (const doc of ['README.md', 'docs/JETSON.md']) {
    const text = readFileSync(doc, 'utf8');
    assert.ok(text.includes(GPU_INSTALL_COMMAND), `${doc} gives the install command as the log line does`);
    assert.doesNotMatch(text, /npm install onnxruntime-node --onnxruntime-node-install/, `${doc}: no other form of it`);
  }
  // the flag the command passes is the one onnxruntime-node's install script reads, and it
  // overrides the project's .npmrc, which skips the download
  assert.match(GPU_INSTALL_COMMAND, /^npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12$/);
  const script = readFileSync('node_modules/onnxruntime-node/script/install-utils.js', 'utf8');
  assert.match(script, /npm_config_onnxruntime_node_install\b/);
  assert.match(script, /case 'skip':/);
  assert.match(readFileSync('.npmrc', 'utf8'), /^onnxruntime-node-install=skip$/m);
});

test('the hint is for the GPU providers only', () => {
  assert.match(gpuInstallHint('tensorrt')!, /docs\/JETSON\.md/);
  assert.equal(gpuInstallHint('cpu'), undefined);
  assert.equal(gpuInstallHint('webgpu'), undefined);
});

test('ttaq providers gives the same hint for a GPU provider library that is not installed', async () => {
  const r = await checkProviders({ models: [], providers: ['cuda', 'cpu'], batch: 1, reps: 1, train: false });
  if (r.available.includes('cuda')) return; // a machine with the CUDA libraries: nothing skipped
  const cuda = r.skipped.find((s) => s.provider === 'cuda');
  assert.ok(cuda, 'cuda is reported as skipped');
  // a binary without a cuda backend at all (not x64 Linux) says so instead
  if (r.backends.some((b) => b.name === 'cuda')) assert.ok(cuda.reason.endsWith(`; ${gpuInstallHint('cuda')!}`), cuda.reason);
});

/** A log line as docs/JETSON.md quotes it (`...` and `<model>` standing for any text) as a pattern. */
const quoted = (doc: string, start: string): RegExp => {
  const m = new RegExp('`(' + start.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '[^`]*)`').exec(doc.replace(/\s*\n\s*/g, ' '));
  assert.ok(m, `docs/JETSON.md quotes a line starting "${start}"`);
  return new RegExp('^' + m[1]!.split(/\.\.\.|<model>/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.+') + '$');
};

test('the provider-fallback log lines docs/JETSON.md quotes are the ones the code writes', async () => {
  const doc = readFileSync('docs/JETSON.md', 'utf8');
  // a provider the binary lacks
  const skipped: RuntimeLogEvent[] = [];
  resolveProviders(['tensorrt', 'cuda', 'cpu'], ['cuda', 'cpu'], (e) => skipped.push(e));
  assert.match(skipped[0]!.message, quoted(doc, "provider 'tensorrt' skipped:"));
  // a provider that fails the agent's warm-up runs
  const warmup: RuntimeLogEvent[] = [];
  const runner = (provider: string): ModelRunner => ({ info: { provider }, dispose: async () => {} }) as unknown as ModelRunner;
  await buildWarmRunner(['tensorrt', 'cuda', 'cpu'], async (chain) => runner(chain[0]!), async (r) => {
    if (r.info.provider === 'tensorrt') throw new Error('engine build failed');
  }, (e) => warmup.push(e));
  assert.equal(warmup.length, 1);
  assert.match(warmup[0]!.message, quoted(doc, "provider 'tensorrt' failed its warm-up run:"));
  // a provider whose session fails to load: tensorrt offered as if its library were installed
  const created: RuntimeLogEvent[] = [];
  const s = await createSession(await loadModel('models/resnet20-fmnist.onnx'), {
    providers: ['tensorrt', 'cuda'], availableProviders: () => ['tensorrt', 'cuda', 'cpu'], logger: (e) => created.push(e), source: 'resnet20-fmnist.onnx',
  }).catch(() => undefined);
  await s?.release();
  const first = created.find((e) => /failed to create a session/.test(e.message));
  if (first) assert.match(first.message, quoted(doc, "provider 'tensorrt' failed to create a session for"));
});
