import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { encodeModel } from '../../sdk/onnx/codec.ts';
import { f32, i64, intRange, makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Model, Tensor } from '../../sdk/onnx/types.ts';
import { createSession, resolveProviders, type RuntimeLogEvent } from '../../sdk/runtime/index.ts';
import { ortOptions } from '../../sdk/runtime/session.ts';
import { model } from '../onnx/fixtures.ts';

const quiet = { logger: () => {} };

function affine(): Model {
  const b = new GraphBuilder();
  b.input('x', 'float32', ['batch', 3]);
  const y = b.op1('Add', [b.op1('Mul', ['x', b.constant(f32([3], [1, 2, 3]))]), b.scalar(0.5)], {}, { outputNames: ['y'] });
  const r = b.op1('Relu', [y], {}, { outputNames: ['r'] });
  b.output(y, 'float32', ['batch', 3]);
  b.output(r, 'float32', ['batch', 3]);
  return model(b);
}

test('provider resolution: only cpu available, preference tensorrt,cuda,cpu -> cpu with two logged reasons', async () => {
  const events: RuntimeLogEvent[] = [];
  const s = await createSession(affine(), {
    providers: ['tensorrt', 'cuda', 'cpu'],
    availableProviders: () => ['cpu'],
    logger: (e) => events.push(e),
  });
  assert.equal(s.provider, 'cpu');
  assert.equal(events.length, 2);
  assert.deepEqual(events.map((e) => e.provider), ['tensorrt', 'cuda']);
  assert.ok(events.every((e) => e.level === 'warn' && /trying 'cpu'/.test(e.message) && e.reason && e.reason.length > 10));
  await s.release();
});

test('provider resolution: the default preference logs at info level, explicit preference at warn', () => {
  const ev: RuntimeLogEvent[] = [];
  assert.deepEqual(resolveProviders(['tensorrt', 'cuda', 'cpu'], ['cpu', 'cuda'], (e) => ev.push(e), false), ['cuda', 'cpu']);
  assert.equal(ev.length, 1);
  assert.equal(ev[0]!.level, 'info');
  assert.match(ev[0]!.message, /'tensorrt' skipped.*trying 'cuda'/);
});

test('provider resolution: nothing available -> RUNTIME_NO_PROVIDER', async () => {
  await assert.rejects(
    createSession(affine(), { providers: ['tensorrt', 'cuda'], availableProviders: () => ['cpu'], logger: () => {} }),
    (e: unknown) => isTtaqError(e) && e.code === 'RUNTIME_NO_PROVIDER' && /tensorrt, cuda/.test(e.message) && /available: cpu/.test(e.message),
  );
  await assert.rejects(
    createSession(affine(), { availableProviders: () => [], logger: () => {} }),
    (e: unknown) => isTtaqError(e) && e.code === 'RUNTIME_NO_PROVIDER',
  );
});

test('run: IR tensors in and out, fetch subsets, symbolic batch, threads and options accepted', async () => {
  const s = await createSession(encodeModel(affine()), { ...quiet, intraOpThreads: 1, interOpThreads: 1, graphOptimization: 'basic', extra: { 'session.disable_prepacking': '1' } });
  assert.deepEqual(s.inputNames, ['x']);
  assert.deepEqual(s.outputNames, ['y', 'r']);
  assert.deepEqual(s.inputs[0], { name: 'x', dtype: 'float32', shape: ['batch', 3] });
  const x = f32([2, 3], [1, 1, 1, -1, -1, -1]);
  const all = await s.run({ x });
  assert.deepEqual(Array.from(all.y!.data as Float32Array), [1.5, 2.5, 3.5, -0.5, -1.5, -2.5]);
  assert.deepEqual(Array.from(all.r!.data as Float32Array), [1.5, 2.5, 3.5, 0, 0, 0]);
  assert.deepEqual(all.y!.dims, [2, 3]);
  const only = await s.run({ x }, ['r']);
  assert.deepEqual(Object.keys(only), ['r']);
  await s.release();
  await s.release(); // idempotent
  await assert.rejects(s.run({ x }), (e: unknown) => isTtaqError(e) && e.code === 'RUNTIME_RUN_FAILED' && /released/.test(e.message));
});

test('run: int64 and bool tensors pass through unchanged', async () => {
  const b = new GraphBuilder();
  b.input('idx', 'int64', [3]);
  b.input('mask', 'bool', [3]);
  const plus = b.op1('Add', ['idx', b.scalar(10, 'int64')], {}, { outputNames: ['plus'] });
  const notm = b.op1('Not', ['mask'], {}, { outputNames: ['notm'] });
  const shape = b.op1('Shape', ['idx'], {}, { outputNames: ['shape'] });
  b.output(plus, 'int64', [3]);
  b.output(notm, 'bool', [3]);
  b.output(shape, 'int64', [1]);
  const s = await createSession(model(b), quiet);
  const out = await s.run({ idx: i64([3], [1, -2, 2 ** 40]), mask: makeTensor('bool', [3], Uint8Array.from([1, 0, 1])) });
  assert.equal(out.plus!.dtype, 'int64');
  assert.deepEqual(Array.from(out.plus!.data as BigInt64Array), [11n, 8n, 2n ** 40n + 10n]);
  assert.equal(out.notm!.dtype, 'bool');
  assert.deepEqual(Array.from(out.notm!.data as Uint8Array), [0, 1, 0]);
  assert.deepEqual(Array.from(out.shape!.data as BigInt64Array), [3n]);
  await s.release();
});

test('run: sub-byte inputs and outputs work (onnxruntime-node cannot move them itself)', async () => {
  for (const [dtype, opset, ir] of [['int4', 21, 10], ['uint4', 21, 10], ['int2', 25, 13], ['uint2', 25, 13]] as const) {
    const b = new GraphBuilder();
    b.input('q', dtype, [5]);
    b.input('x', 'float32', [5]);
    const s1 = b.constant(f32([], [0.5]));
    const dq = b.op1('DequantizeLinear', ['q', s1], {}, { outputNames: ['dq'] });
    const zp = b.constant(makeTensor(dtype, [], (dtype.startsWith('u') ? Uint8Array : Int8Array).from([1]) as Int8Array & Uint8Array) as Tensor);
    const qx = b.op1('QuantizeLinear', ['x', s1, zp], {}, { outputNames: ['qx'] });
    b.output(dq, 'float32', [5]);
    b.output(qx, dtype, [5]);
    const m = model(b, opset, ir);
    const signed = dtype === 'int4' || dtype === 'int2';
    const qv = signed ? [-2, -1, 0, 1, 1] : [0, 1, 2, 3, 3];
    const q = makeTensor(dtype, [5], (signed ? Int8Array : Uint8Array).from(qv) as Int8Array & Uint8Array) as Tensor;
    for (const src of [m, encodeModel(m)]) {
      const s = await createSession(src, quiet);
      assert.deepEqual(s.inputs.map((v) => [v.name, v.dtype]), [['q', dtype], ['x', 'float32']]);
      assert.deepEqual(s.outputs.map((v) => [v.name, v.dtype]), [['dq', 'float32'], ['qx', dtype]]);
      const out = await s.run({ q, x: f32([5], [-10, -0.5, 0, 0.5, 10]) });
      assert.deepEqual(Array.from(out.dq!.data as Float32Array), qv.map((v) => v * 0.5), `${dtype} dequantized`);
      assert.equal(out.qx!.dtype, dtype);
      const [lo, hi] = intRange[dtype]!;
      const want = [-10, -0.5, 0, 0.5, 10].map((v) => Math.min(hi, Math.max(lo, Math.round(v / 0.5) + 1)));
      assert.deepEqual(Array.from(out.qx!.data as ArrayLike<number>), want, `${dtype} quantized`);
      await s.release();
    }
  }
});

test('errors: bad model -> RUNTIME_SESSION_FAILED with the ORT message; bad feeds -> RUNTIME_RUN_FAILED', async () => {
  const b = new GraphBuilder();
  b.input('x', 'float32', [2]);
  b.output(b.op1('NoSuchOp', ['x']), 'float32', [2]);
  await assert.rejects(createSession(model(b), { ...quiet, source: 'broken.onnx' }), (e: unknown) =>
    isTtaqError(e) && e.code === 'RUNTIME_SESSION_FAILED' && /broken\.onnx/.test(e.message) && /NoSuchOp/.test(e.message));
  await assert.rejects(createSession(Uint8Array.from([1, 2, 3]), quiet), (e: unknown) => isTtaqError(e) && e.code === 'RUNTIME_SESSION_FAILED');
  // a path where the loaded model or its bytes belong
  await assert.rejects(createSession('models/x.onnx' as never, quiet), (e: unknown) => isTtaqError(e) && e.code === 'RUNTIME_SESSION_FAILED' && /the string 'models\/x\.onnx'.*loadModel\(path\) or readModelBytes\(path\)/.test(e.message));
  const s = await createSession(affine(), quiet);
  await assert.rejects(s.run({}), (e: unknown) => isTtaqError(e) && e.code === 'RUNTIME_RUN_FAILED' && /missing \[x\]/.test(e.message));
  await assert.rejects(s.run({ x: f32([1, 3], [1, 2, 3]), z: f32([1], [1]) }), (e: unknown) => isTtaqError(e) && /unknown \[z\]/.test(e.message));
  await assert.rejects(s.run({ x: f32([1, 3], [1, 2, 3]) }, ['nope']), (e: unknown) => isTtaqError(e) && e.code === 'RUNTIME_RUN_FAILED' && /nope/.test(e.message));
  await assert.rejects(s.run({ x: f32([4], [1, 2, 3, 4]) }), (e: unknown) => isTtaqError(e) && e.code === 'RUNTIME_RUN_FAILED' && /rank|dimension|shape/i.test(e.message)
    && /on 'cpu' failed/.test(e.message) && !/cannot run a node/.test(e.message)); // the provider hint is for GPU providers only
  await s.release();
});

test('a provider that fails to start falls back to the next one with a logged reason', async () => {
  // Pretend cuda is available: without its provider library (any CPU-only install) onnxruntime
  // fails to append it when the session is created, as a GPU provider without a driver does.
  const events: RuntimeLogEvent[] = [];
  const s = await createSession(affine(), { providers: ['cuda', 'cpu'], logger: (e) => events.push(e), availableProviders: () => ['cuda', 'cpu'] });
  if (s.provider === 'cpu') {
    assert.equal(events.length, 1);
    assert.equal(events[0]!.level, 'warn');
    assert.match(events[0]!.message, /'cuda' failed to create a session.*trying 'cpu'/);
  } else {
    assert.equal(s.provider, 'cuda'); // a machine with a working CUDA install
  }
  const out = await s.run({ x: f32([1, 3], [1, 1, 1]) }, ['y']);
  assert.deepEqual(Array.from(out.y!.data as Float32Array), [1.5, 2.5, 3.5]);
  await s.release();
});

test('a provider onnxruntime-node does not register is skipped with a reason, never reported as used', async () => {
  const events: RuntimeLogEvent[] = [];
  const s = await createSession(affine(), { providers: ['dml', 'cpu'], logger: (e) => events.push(e), availableProviders: () => ['dml', 'cpu'] });
  assert.equal(s.provider, 'cpu');
  assert.equal(events.length, 1);
  assert.match(events[0]!.message, /'dml' skipped: .*no 'dml' backend/);
  await s.release();
});

test('attribute A.int values work through sessions created many times (cheap repeated creation)', async () => {
  const b = new GraphBuilder();
  b.input('x', 'float32', [1, 4]);
  b.output(b.op1('ReduceSum', ['x', b.ints([1])], { keepdims: A.int(0) }, { outputNames: ['s'] }), 'float32', [1]);
  const m = model(b, 17);
  for (let i = 0; i < 20; i++) {
    const s = await createSession(m, quiet);
    const out = await s.run({ x: f32([1, 4], [i, 1, 2, 3]) });
    assert.equal((out.s!.data as Float32Array)[0], i + 6);
    await s.release();
  }
});

test('session defaults: workers asleep; CPU sessions fold the weights\' DequantizeLinear (disable_quant_qdq) and flush denormals; explicit entries win; GPU sessions keep QDQ', () => {
  const cpu = ortOptions({}, ['cpu']) as { extra?: Record<string, string> };
  assert.equal(cpu.extra?.['session.disable_quant_qdq'], '1');
  assert.equal(cpu.extra?.['session.set_denormal_as_zero'], '1');
  assert.equal(cpu.extra?.['session.intra_op.allow_spinning'], '0', 'workers asleep between runs by default');
  const explicit = ortOptions({ extra: { 'session.disable_quant_qdq': '0', 'session.intra_op.allow_spinning': '0', 'session.set_denormal_as_zero': '0' } }, ['cpu']) as { extra?: Record<string, string> };
  assert.deepEqual(explicit.extra, { 'session.disable_quant_qdq': '0', 'session.intra_op.allow_spinning': '0', 'session.set_denormal_as_zero': '0' });
  const gpu = ortOptions({}, ['tensorrt', 'cuda', 'cpu']) as { extra?: Record<string, string> };
  assert.equal(gpu.extra?.['session.disable_quant_qdq'], undefined, 'TensorRT builds its INT8 engine from the QDQ nodes');
  assert.equal(gpu.extra?.['session.intra_op.allow_spinning'], '0');
});

test('a QDQ conv gives the same outputs with and without the CPU QDQ default', async () => {
  // x -> Conv(DequantizeLinear(int8 W, per-channel scale)) -> BatchNormalization -> y
  const C = 4;
  const b = new GraphBuilder('qdq_conv');
  b.input('x', 'float32', [null, 3, 8, 8]);
  const wq = b.constant(makeTensor('int8', [C, 3, 3, 3], Int8Array.from({ length: C * 27 }, (_, i) => ((i * 37) % 15) - 7)), 'w_q');
  const wd = b.op1('DequantizeLinear', [wq, b.constant(f32([C], [0.02, 0.05, 0.01, 0.03]), 'w_scale'), b.constant(makeTensor('int8', [C], new Int8Array(C)), 'w_zp')], { axis: A.int(0) });
  const conv = b.op1('Conv', ['x', wd], { pads: A.ints([1, 1, 1, 1]) });
  const bn = b.op1('BatchNormalization', [conv, b.constant(f32([C], [1, 2, 0.5, 1]), 'g'), b.constant(f32([C], [0, 0.1, -0.1, 0.2]), 'be'), b.constant(f32([C], [0.1, 0, 0.2, 0]), 'm'), b.constant(f32([C], [1, 0.5, 2, 1]), 'v')]);
  b.op('Identity', [bn], {}, { outputNames: ['y'] });
  b.output('y', 'float32', [null, C, 8, 8]);
  const m = model(b, 13);
  const x = f32([2, 3, 8, 8], Array.from({ length: 384 }, (_, i) => Math.sin(i * 0.7)));
  const outs: Float32Array[] = [];
  for (const extra of [{}, { 'session.disable_quant_qdq': '0' }] as Record<string, string>[]) {
    const s = await createSession(m, { ...quiet, providers: ['cpu'], extra });
    outs.push((await s.run({ x })).y!.data as Float32Array);
    await s.release();
  }
  let d = 0;
  for (let i = 0; i < outs[0]!.length; i++) d = Math.max(d, Math.abs(outs[0]![i]! - outs[1]![i]!));
  assert.ok(d < 1e-5, `outputs differ by ${d}`);
  assert.ok(outs[0]!.some((v) => Math.abs(v) > 0.1), 'a non-trivial output');
});

test('CPU sessions flush denormals: a value below 1.2e-38 counts as zero', async () => {
  // the flag reaches the thread of the process's first onnxruntime session (all sessions here are
  // ttaq's, with the default): x·2 of a float32 denormal is 0 rather than 2e-39
  const b = new GraphBuilder('denormal');
  b.input('x', 'float32', [2]);
  b.op('Mul', ['x', b.constant(f32([2], [2, 2]), 'two')], {}, { outputNames: ['y'] });
  b.output('y', 'float32', [2]);
  const s = await createSession(model(b, 13), { intraOpThreads: 1 });
  try {
    const y = (await s.run({ x: makeTensor('float32', [2], Float32Array.of(1e-39, 1e-30)) })).y!.data as Float32Array;
    assert.equal(y[0], 0, 'the denormal is flushed');
    assert.ok(Math.abs(y[1]! - 2e-30) < 1e-36, 'a normal value is unchanged');
  } finally {
    await s.release();
  }
});

test('profilePrefix: the released session leaves onnxruntime\'s profile with one model_run per run and the graph\'s nodes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-prof-'));
  try {
    const x = f32([2, 3], [1, 2, 3, 4, 5, 6]);
    const s = await createSession(affine(), { ...quiet, providers: ['cpu'], profilePrefix: join(dir, 'p') });
    await s.run({ x });
    await s.run({ x });
    await s.release();
    const files = readdirSync(dir);
    assert.equal(files.length, 1);
    assert.match(files[0]!, /^p_.*\.json$/);
    const events = JSON.parse(readFileSync(join(dir, files[0]!), 'utf8')) as { cat?: string; name: string }[];
    assert.equal(events.filter((e) => e.cat === 'Session' && e.name === 'model_run').length, 2);
    assert.ok(events.some((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('profilePrefix defaults to $TTAQ_ORT_PROFILE; neither set, onnxruntime does not profile', () => {
  const saved = process.env.TTAQ_ORT_PROFILE;
  try {
    delete process.env.TTAQ_ORT_PROFILE;
    assert.equal(ortOptions({}, ['cpu']).enableProfiling, undefined);
    process.env.TTAQ_ORT_PROFILE = '/tmp/prof/step';
    assert.deepEqual([ortOptions({}, ['cpu']).enableProfiling, ortOptions({}, ['cpu']).profileFilePrefix], [true, '/tmp/prof/step']);
    assert.equal(ortOptions({ profilePrefix: '/tmp/other' }, ['cpu']).profileFilePrefix, '/tmp/other');
  } finally {
    if (saved === undefined) delete process.env.TTAQ_ORT_PROFILE;
    else process.env.TTAQ_ORT_PROFILE = saved;
  }
});
