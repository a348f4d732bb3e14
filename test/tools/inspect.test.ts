import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { encodeModel } from '../../sdk/onnx/codec.ts';
import { saveModel } from '../../sdk/onnx/io.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import { inspectModel } from '../../tools/inspect.ts';
import { model, randn, rng, tinyResNet } from '../onnx/fixtures.ts';

const bin = fileURLToPath(new URL('../../bin/ttaq.js', import.meta.url));

function ttaq(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: { ...process.env, TTAQ_JSON_ERRORS: '' } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

// tinyResNet by hand (input 1x3x16x16):
//   conv weights: stem 8*3*3*3=216, block 2 * 8*8*3*3=1152, down 16*8*3*3=1152, 16*16*3*3=2304,
//   projection 16*8*1*1=128; BN: 4 vectors per channel over 8+8+8+16+16+16=72 channels = 288;
//   fc 10*16 + 10 = 170.
const PARAMS = 216 + 1152 + 1152 + 2304 + 128 + 288 + 170;
//   MACs = output elements * Cin * k*k: stem 8*16*16*27, two block convs 8*16*16*72 each,
//   down 16*8*8*72 and 16*8*8*144, projection 16*8*8*8, fc 16*10.
const MACS = 2048 * 27 + 2 * 2048 * 72 + 1024 * 72 + 1024 * 144 + 1024 * 8 + 160;

test('ttaq inspect --json on a ResNet-style model: parameters and MACs equal the hand count', async () => {
  assert.equal(PARAMS, 5410);
  const dir = await mkdtemp(join(tmpdir(), 'ttaq-inspect-'));
  const p = join(dir, 'tiny_resnet.onnx');
  await saveModel(p, tinyResNet());
  const [js, text] = await Promise.all([ttaq('inspect', p, '--json'), ttaq('inspect', p)]);
  assert.equal(js.code, 0, js.stderr);
  const r = JSON.parse(js.stdout);
  assert.equal(r.parameters.count, PARAMS);
  assert.equal(r.parameters.bytes, PARAMS * 4);
  assert.deepEqual(r.parameters.byDtype, { float32: { count: PARAMS, bytes: PARAMS * 4, tensors: 32 } });
  assert.equal(r.macs.total, MACS);
  assert.deepEqual(r.macs.layers.map((l: { macs: number }) => l.macs), [2048 * 27, 2048 * 72, 2048 * 72, 1024 * 72, 1024 * 144, 1024 * 8, 160]);
  assert.equal(r.irVersion, 8);
  assert.equal(r.opset, 17);
  assert.deepEqual(r.inputs, [{ name: 'input', dtype: 'float32', shape: [1, 3, 16, 16] }]);
  assert.deepEqual(r.outputs, [{ name: 'logits', dtype: 'float32', shape: [1, 10] }]);
  assert.deepEqual(r.ops, { BatchNormalization: 6, Conv: 6, Relu: 5, Add: 2, Flatten: 1, Gemm: 1, GlobalAveragePool: 1 });
  assert.equal(r.batchNorm.state, 'present');
  assert.equal(r.batchNorm.bnNodes, 6);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /parameters: 5,410/);
  assert.match(text.stdout, new RegExp(`MACs at batch 1: ${MACS.toLocaleString('en-US')}`));
  assert.match(text.stdout, /BatchNorm: present \(6 BatchNormalization nodes\)/);
});

test('inspect: folded BN, packed int4 bytes, dynamic batch counted at 1, other dynamic dims need --shape', async () => {
  const b = new GraphBuilder('folded');
  b.input('x', 'float32', ['N', 3, 'H', 8]);
  const c = b.op1('Conv', ['x', b.constant(randn(rng(1), [4, 3, 3, 3])), b.constant(f32([4], [0, 0, 0, 0]))], { pads: A.ints([1, 1, 1, 1]) });
  const w4 = b.constant({ dtype: 'int4', dims: [5], data: Int8Array.from([1, 2, 3, 4, 5]) });
  const dq = b.op1('DequantizeLinear', [w4, b.scalar(0.5)]);
  const y = b.op1('MatMul', [b.op1('ReduceMean', [c, b.ints([1, 2])], { keepdims: A.int(0) }), b.op1('Reshape', [b.op1('Concat', [dq, dq, dq, dq, dq, dq, dq, dq], { axis: A.int(0) }), b.ints([8, 5])])]);
  b.output(y, 'float32');
  const m = model(b, 21, 10);
  const noShape = await inspectModel(m, 'folded.onnx');
  assert.equal(noShape.macs, null);
  assert.match(noShape.macsError!, /ONNX_DYNAMIC_SHAPE/);
  assert.match(noShape.macsError!, /'x'/);
  assert.equal(noShape.batchNorm.state, 'folded');
  assert.deepEqual(noShape.parameters.byDtype.int4, { count: 5, bytes: 3, tensors: 1 });
  const r = await inspectModel(m, 'folded.onnx', { x: [1, 3, 6, 8] });
  // Conv: 4*6*8 outputs * 27; MatMul [1,8] x [8,5]: 5 * 8.
  assert.equal(r.macs!.total, 4 * 6 * 8 * 27 + 40);
  // Batch 2 given: MACs reported per sample.
  const r2 = await inspectModel(m, 'folded.onnx', { x: [2, 3, 6, 8] });
  assert.equal(r2.macs!.batch, 2);
  assert.equal(r2.macs!.total, 4 * 6 * 8 * 27 + 40);
  // Through the CLI, --shape gives the concrete dims.
  const dir = await mkdtemp(join(tmpdir(), 'ttaq-inspect-'));
  const p = join(dir, 'folded.onnx');
  await saveModel(p, m);
  const out = await ttaq('inspect', p, '--json', '--shape', 'x=1x3x6x8');
  assert.equal(out.code, 0, out.stderr);
  assert.equal(JSON.parse(out.stdout).macs.total, 4 * 6 * 8 * 27 + 40);
  // a --shape for an input the model lacks, or against its static dims, is bad usage, not ignored
  const unknown = await ttaq('inspect', p, '--shape', 'y=1x3x6x8');
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /no input 'y'; its inputs: x/);
  const clash = await ttaq('inspect', p, '--shape', 'x=1x4x6x8');
  assert.equal(clash.code, 2);
  assert.match(clash.stderr, /x=1x4x6x8 does not fit the input's shape \?x3x\?x8/);
});

test('inspect: bad files print the coded error and exit 2, never an unhandled exception', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ttaq-inspect-bad-'));
  const good = encodeModel(tinyResNet());
  await writeFile(join(dir, 'trunc.onnx'), good.subarray(0, good.length >> 1));
  await writeFile(join(dir, 'img.png'), Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]));
  await writeFile(join(dir, 'notes.txt'), 'just some text\n');
  const gb = new GraphBuilder();
  gb.input('x', 'float32', [2]);
  gb.output(gb.op1('Relu', ['x']), 'float32', [2]);
  await writeFile(join(dir, 'opset5.onnx'), encodeModel(model(gb, 5, 8)));
  await writeFile(join(dir, 'ir99.onnx'), encodeModel(model(gb, 17, 99)));
  const cases: [string[], number, string][] = [
    [['inspect', join(dir, 'trunc.onnx')], 2, 'ONNX_TRUNCATED'],
    [['inspect', join(dir, 'img.png')], 2, 'ONNX_NOT_A_MODEL'],
    [['inspect', join(dir, 'notes.txt'), '--json'], 2, 'ONNX_NOT_A_MODEL'],
    [['inspect', join(dir, 'opset5.onnx')], 2, 'ONNX_UNSUPPORTED_OPSET'],
    [['inspect', join(dir, 'ir99.onnx')], 2, 'ONNX_UNSUPPORTED_IR_VERSION'],
    [['inspect', join(dir, 'missing.onnx')], 2, 'ONNX_READ_FAILED'],
    [['inspect'], 2, 'CLI_USAGE'],
    [['inspect', join(dir, 'trunc.onnx'), '--bogus'], 2, 'CLI_USAGE'],
  ];
  const results = await Promise.all(cases.map(([args]) => ttaq(...args)));
  results.forEach((res, i) => {
    const [args, code, errCode] = cases[i]!;
    assert.equal(res.code, code, `${args.join(' ')}: ${res.stderr}`);
    assert.match(res.stderr, new RegExp(`\\[${errCode}\\]`), args.join(' '));
    assert.doesNotMatch(res.stderr, /unexpected failure|at .*\.ts:\d+/, 'no stack traces');
    assert.equal(res.stdout, '');
  });
  assert.match(results[0]!.stderr, /trunc\.onnx/);
});
