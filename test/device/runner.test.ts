// The real runners on onnxruntime (CPU): a tiny model built with the graph builder, its manifest,
// the prediction head checked against a plain computation, adaptation through sdk/adapt, and the
// whole agent on a generated video with checkpoint and restore.
import { availableParallelism } from 'node:os';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { Agent } from '../../device/agent.ts';
import { parseAgentConfig } from '../../device/config.ts';
import { buildWarmRunner, createAdaptiveRunner, createPlainRunner, loadModelFiles, sessionOptions, warmSizes, WARM_MAX_BATCH } from '../../device/runner.ts';
import { AgentStore } from '../../device/store.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { encodeModel } from '../../sdk/onnx/codec.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import type { Model } from '../../sdk/onnx/types.ts';
import { sha256Hex, writeManifest } from '../../sdk/manifest/index.ts';
import type { FrameBatch, ModelRunner } from '../../device/ports.ts';
import { defaultAvailableProviders, type RuntimeLogEvent } from '../../sdk/runtime/index.ts';
import { makeVideo, SPEC, tmp } from './helpers.ts';

const CLASSES = 4;
const PIX = 64;

/** x [N, 1, 8, 8] -> BN -> Flatten -> Gemm -> logits [N, 4]; weights from a fixed formula. */
function tinyModel(): { model: Model; W: Float32Array; b: Float32Array } {
  const W = Float32Array.from({ length: PIX * CLASSES }, (_, i) => Math.sin(i * 0.37) * 0.3);
  const b = Float32Array.from({ length: CLASSES }, (_, i) => 0.1 * i);
  const g = new GraphBuilder('tiny');
  const x = g.input('x', 'float32', ['N', 1, 8, 8]);
  const bn = g.op1('BatchNormalization', [x, g.initializer('bn.scale', f32([1], [1])), g.initializer('bn.bias', f32([1], [0])), g.initializer('bn.mean', f32([1], [0])), g.initializer('bn.var', f32([1], [1]))], { epsilon: A.float(1e-5) }, { name: 'bn' });
  const flat = g.op1('Flatten', [bn], { axis: A.int(1) });
  g.op('Gemm', [flat, g.initializer('fc.w', f32([PIX, CLASSES], W)), g.initializer('fc.b', f32([CLASSES], b))], {}, { outputNames: ['logits'] });
  g.output('logits', 'float32', ['N', CLASSES]);
  return { model: { irVersion: 8, opsetImports: [{ domain: '', version: 17 }], producerName: 'test', producerVersion: '0', metadata: {}, graph: g.build() }, W, b };
}

async function writeTiny(dir: string): Promise<{ path: string; W: Float32Array; b: Float32Array }> {
  const { model, W, b } = tinyModel();
  const bytes = encodeModel(model);
  const path = join(dir, 'tiny.onnx');
  writeFileSync(path, bytes);
  await writeManifest(join(dir, 'tiny.manifest.json'), {
    format: 'ttaq-manifest/1', name: 'tiny', model: 'tiny.onnx', sha256: sha256Hex(bytes),
    input: { name: 'x', shape: [-1, 1, 8, 8] }, output: { name: 'logits' }, labels: ['a', 'b', 'c', 'd'],
    preprocess: { ...SPEC, layout: 'NCHW' }, adaptation: { bnNodes: ['bn'] }, provenance: { metrics: {} },
  });
  return { path, W, b };
}

const silentLog = () => {};

test('plain runner: predictions, confidence and entropy match a direct computation', async () => {
  const dir = tmp();
  const { path, W, b } = await writeTiny(dir);
  const m = await loadModelFiles(path);
  const runner = await createPlainRunner(m, sessionOptions(parseAgentConfig({ model: { providers: ['cpu'] } }).model, silentLog));
  assert.equal(runner.info.provider, 'cpu');
  assert.equal(runner.info.classes, 4);
  const n = 3;
  const data = Float32Array.from({ length: n * PIX }, (_, i) => Math.cos(i * 0.11));
  const batch: FrameBatch = { data, dims: [n, 1, 8, 8], frames: [] };
  const out = await runner.infer(batch);
  const scale = 1 / Math.sqrt(1 + 1e-5);
  for (let s = 0; s < n; s++) {
    const z = Array.from({ length: CLASSES }, (_, k) => b[k]! + Array.from({ length: PIX }, (_, j) => data[s * PIX + j]! * scale * W[j * CLASSES + k]!).reduce((a, v) => a + v, 0));
    const mx = Math.max(...z);
    const e = z.map((v) => Math.exp(v - mx));
    const sum = e.reduce((a, v) => a + v, 0);
    const p = e.map((v) => v / sum);
    const want = p.indexOf(Math.max(...p));
    assert.equal(out.predictions[s], want, `sample ${s}`);
    assert.ok(Math.abs(out.confidence[s]! - p[want]!) < 1e-5);
    const h = -p.reduce((a, v) => a + v * Math.log(v), 0);
    assert.ok(Math.abs(out.entropy[s]! - h) < 1e-5, `entropy ${out.entropy[s]} vs ${h}`);
  }
  await runner.dispose();
});

test('a manifest that does not match the model is refused', async () => {
  const dir = tmp();
  const { path } = await writeTiny(dir);
  writeFileSync(path, new Uint8Array([1, 2, 3]));
  await assert.rejects(loadModelFiles(path), /SHA-256 .* its manifest says/);
});

test('adaptive runner: steps, state round trip, reset', async () => {
  const dir = tmp();
  const { path } = await writeTiny(dir);
  const m = await loadModelFiles(path);
  const r = await createAdaptiveRunner(m, 'tent', {}, sessionOptions(parseAgentConfig({ model: { providers: ['cpu'] } }).model, silentLog), silentLog);
  assert.equal(r.info.provider, 'cpu');
  const batch: FrameBatch = { data: Float32Array.from({ length: 8 * PIX }, (_, i) => Math.sin(i * 0.07) * 2 + 0.5), dims: [8, 1, 8, 8], frames: [] };
  for (let i = 0; i < 3; i++) await r.adapt!(batch);
  assert.equal(r.step, 3);
  const blob = r.saveState!();
  const before = await r.infer(batch);
  r.resetState!();
  r.loadState!(blob);
  assert.equal(r.step, 3);
  const after = await r.infer(batch);
  after.entropy.forEach((v, i) => assert.ok(Math.abs(v - before.entropy[i]!) < 1e-6));
  await r.dispose();
});

test('adaptive runner: a provider this build lacks is reported once, not once per session', { skip: defaultAvailableProviders().includes('cuda') && 'this build has CUDA' }, async () => {
  const dir = tmp();
  const { path } = await writeTiny(dir);
  const m = await loadModelFiles(path);
  const events: RuntimeLogEvent[] = [];
  const log = (e: RuntimeLogEvent) => { events.push(e); };
  const r = await createAdaptiveRunner(m, 'tent', {}, sessionOptions(parseAgentConfig({ model: { providers: ['cuda', 'cpu'] } }).model, log), log);
  await r.dispose();
  assert.equal(r.info.provider, 'cpu');
  assert.equal(events.filter((e) => /provider 'cuda' skipped/.test(e.message)).length, 1, events.map((e) => e.message).join('\n'));
});

test('adaptive runner: confidences come from the adapter\'s own pass and match the plain runner\'s head', async () => {
  const dir = tmp();
  const { path } = await writeTiny(dir);
  const m = await loadModelFiles(path);
  const opts = sessionOptions(parseAgentConfig({ model: { providers: ['cpu'] } }).model, silentLog);
  const plain = await createPlainRunner(m, opts);
  // 'source' normalises with the running statistics: the same function as the plain model.
  const source = await createAdaptiveRunner(m, 'source', {}, opts, silentLog);
  const tent = await createAdaptiveRunner(m, 'tent', {}, opts, silentLog);
  const batch: FrameBatch = { data: Float32Array.from({ length: 5 * PIX }, (_, i) => Math.sin(i * 0.13) * 1.5), dims: [5, 1, 8, 8], frames: [] };
  const want = await plain.infer(batch);
  for (const out of [await source.infer(batch), await source.adapt!(batch)]) {
    assert.equal(out.confidence.length, 5);
    assert.deepEqual(Array.from(out.predictions), Array.from(want.predictions));
    out.confidence.forEach((c, i) => assert.ok(Math.abs(c - want.confidence[i]!) < 1e-5, `sample ${i}: ${c} vs ${want.confidence[i]}`));
  }
  // Under adaptation each sample's confidence is at least 1/C and bounds its entropy: H >= -log(conf).
  const a = await tent.adapt!(batch);
  assert.equal(a.confidence.length, 5);
  a.confidence.forEach((c, i) => {
    assert.ok(c >= 1 / CLASSES - 1e-6 && c <= 1 + 1e-6, `confidence ${c}`);
    assert.ok(a.entropy[i]! >= -Math.log(c) - 1e-5, `entropy ${a.entropy[i]} below -log(${c})`);
  });
  for (const r of [plain, source, tent]) await r.dispose();
});

test('the agent end to end: video -> tiny ONNX model with adaptation -> checkpoint -> restore', async () => {
  const dir = tmp();
  const { path } = await writeTiny(dir);
  const video = join(dir, 'clip.avi');
  makeVideo(video, 24);
  const config = parseAgentConfig({
    source: { uri: video },
    model: { path, providers: ['cpu'] },
    batch: { size: 4, maxWaitMs: 50 },
    adaptation: { method: 'tent:robust', checkpointEvery: 0 },
    storage: { path: join(dir, 'agent.db'), predictionLog: { enabled: true } },
    http: { enabled: false },
  });
  const run = async () => {
    const agent = await Agent.create(config, { logger: pino({ level: 'silent' }) });
    await agent.start();
    return agent.done();
  };
  const first = await run();
  assert.equal(first.reason, 'source-ended', first.detail);
  assert.equal(first.framesProcessed, 24);
  assert.ok(first.steps >= 6, 'one step per batch of at most 4 frames');
  const st = AgentStore.open(config.storage.path);
  const ck = st.latestCheckpoint()!;
  assert.equal(ck.reason, 'shutdown');
  assert.equal(ck.step, first.steps);
  assert.equal(new TextDecoder().decode(ck.state.subarray(0, 8)), 'TTAQADPT');
  assert.equal(st.predictionCount(), 24);
  st.close();
  const second = await run();
  assert.ok(second.steps >= first.steps + 6, `the step counter continued from the checkpoint (${first.steps} -> ${second.steps})`);
});

test('onnxruntime threads: one per core less the capture process\'s by default, or as configured', () => {
  const auto = sessionOptions(parseAgentConfig({ model: { providers: ['cpu'] } }).model, silentLog);
  assert.equal(auto.intraOpThreads, Math.max(1, availableParallelism() - 1));
  const set = sessionOptions(parseAgentConfig({ model: { providers: ['cpu'], intraOpThreads: 3 } }).model, silentLog);
  assert.equal(set.intraOpThreads, 3);
});

test('warm-up sizes: every partial batch size up to the configured one (capped), or only a fixed model batch', () => {
  assert.deepEqual(warmSizes(4), [1, 2, 3, 4]);
  assert.deepEqual(warmSizes(1), [1]);
  assert.deepEqual(warmSizes(8, 8), [8], 'a fixed-batch model pads partial batches');
  assert.equal(warmSizes(1024).length, WARM_MAX_BATCH);
});

test('a provider that fails its warm-up leaves the chain with its reason logged; the CPU fails as it is', async () => {
  const built: string[][] = [];
  const disposed: string[] = [];
  // a fake runner per chain: it "runs" on the chain's first provider, whose warm-up may throw
  const failing = new Set(['tensorrt', 'webgpu']);
  const build = async (providers: readonly string[]): Promise<ModelRunner> => {
    built.push([...providers]);
    const provider = providers[0]!;
    return {
      info: { provider } as ModelRunner['info'],
      infer: async () => { throw new Error('not used'); },
      warmUp: async () => { if (failing.has(provider)) throw new Error(`${provider}: engine build failed\nstack`); },
      dispose: async () => { disposed.push(provider); },
    };
  };
  const warm = (r: ModelRunner) => r.warmUp!([1]);
  const events: RuntimeLogEvent[] = [];
  const runner = await buildWarmRunner(['tensorrt', 'cuda', 'cpu'], build, warm, (e) => events.push(e));
  assert.equal(runner.info.provider, 'cuda');
  assert.deepEqual(built, [['tensorrt', 'cuda', 'cpu'], ['cuda', 'cpu']]);
  assert.deepEqual(disposed, ['tensorrt'], 'the failed runner is released, the working one kept');
  assert.equal(events.length, 1);
  assert.equal(events[0]!.provider, 'tensorrt');
  assert.equal(events[0]!.level, 'warn');
  assert.match(events[0]!.message, /provider 'tensorrt' failed its warm-up run: tensorrt: engine build failed; trying 'cuda'/);

  // the last provider of the chain, and the CPU anywhere, rethrow the warm-up's own error
  await assert.rejects(buildWarmRunner(['webgpu'], build, warm, () => {}), /webgpu: engine build failed/);
  failing.add('cpu');
  await assert.rejects(buildWarmRunner(['cpu', 'cuda'], build, warm, () => {}), /cpu: engine build failed/);
});
