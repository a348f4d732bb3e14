import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  AttributeProtoSchema,
  AttributeProto_AttributeType,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  StringStringEntryProtoSchema,
  TensorProtoSchema,
  TensorProto_DataLocation,
  TypeProtoSchema,
  TypeProto_TensorSchema,
  ValueInfoProtoSchema,
} from 'onnx-buf';
import { isTtaqError, unwrap } from '../../sdk/errors/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { decodeModel, decodeTensor, encodeModel, encodeTensor } from '../../sdk/onnx/codec.ts';
import { loadModel, saveModel } from '../../sdk/onnx/io.ts';
import { f32, intRange, makeTensor } from '../../sdk/onnx/tensor.ts';
import type { Model, Tensor } from '../../sdk/onnx/types.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import { lowBitConv, model, randn, rng, smallCnn } from './fixtures.ts';

const quiet = { logger: () => {} };
const fromBinaryTensor = (b: Uint8Array) => fromBinary(TensorProtoSchema, b);
const fromBinaryModel = (b: Uint8Array) => fromBinary(ModelProtoSchema, b);
const toBinaryModel = (m: ReturnType<typeof fromBinaryModel>) => toBinary(ModelProtoSchema, m);

async function runAll(m: Model | Uint8Array, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const s = await createSession(m, quiet);
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

function assertSameTensor(a: Tensor, b: Tensor, what: string): void {
  assert.equal(a.dtype, b.dtype, `${what} dtype`);
  assert.deepEqual([...a.dims], [...b.dims], `${what} dims`);
  assert.deepEqual(Array.from(a.data as ArrayLike<number>), Array.from(b.data as ArrayLike<number>), `${what} data`);
}

test('small CNN (Conv, BN, Relu, Add, pools, Gemm, int8 QDQ) round-trips to identical bytes and outputs', async () => {
  const m = smallCnn();
  const bytes1 = encodeModel(m);
  const decoded = unwrap(decodeModel(bytes1, 'small_cnn'));
  const bytes2 = encodeModel(decoded);
  assert.deepEqual(bytes2, bytes1, 'encode(decode(encode(m))) must equal encode(m)');
  assert.equal(decoded.graph.nodes.length, m.graph.nodes.length);
  assert.deepEqual(decoded.metadata, { purpose: 'test' });
  assert.equal(decoded.irVersion, 8);
  assert.deepEqual(decoded.opsetImports, [{ domain: '', version: 17 }]);
  const x = randn(rng(7), [2, 3, 8, 8]);
  const o1 = await runAll(bytes1, { x });
  const o2 = await runAll(bytes2, { x });
  const o3 = await runAll(decoded, { x });
  assertSameTensor(o1.logits!, o2.logits!, 'logits (re-encoded)');
  assertSameTensor(o1.logits!, o3.logits!, 'logits (decoded IR)');
  assert.deepEqual(o1.logits!.dims, [2, 5]);
  assert.ok(Array.from(o1.logits!.data as Float32Array).some((v) => Math.abs(v) > 1e-3), 'outputs are not all zero');
});

for (const dtype of ['int4', 'uint4', 'int2', 'uint2'] as const) {
  test(`${dtype} per-channel QDQ Conv round-trips, and DequantizeLinear gives exactly (w - zp) * scale`, async () => {
    const { model: m, weights, scale, zp } = lowBitConv(dtype);
    const bytes1 = encodeModel(m);
    const decoded = unwrap(decodeModel(bytes1));
    const w2 = decoded.graph.initializers.get('w_q')!;
    assertSameTensor(w2, weights, 'packed weights');
    assertSameTensor(decoded.graph.initializers.get('w_zp')!, zp, 'zero points');
    const bytes2 = encodeModel(decoded);
    assert.deepEqual(bytes2, bytes1);
    const x = randn(rng(11), [1, 3, 5, 5]);
    const o1 = await runAll(bytes1, { x });
    const o2 = await runAll(decoded, { x });
    assertSameTensor(o1.y!, o2.y!, 'conv output');
    // The dequantized weights onnxruntime computes equal the IR's values exactly.
    const per = 27;
    const expect = Float32Array.from(w2.data as ArrayLike<number>, (v, i) => Math.fround((v - Number(zp.data[Math.floor(i / per)])) * scale[Math.floor(i / per)]!));
    assert.deepEqual(Array.from(o1.w_deq!.data as Float32Array), Array.from(expect));
  });
}

test('sub-byte packing is the ONNX layout: low bits first, odd tails zero-padded', () => {
  const int4 = encodeTensor(makeTensor('int4', [3], Int8Array.from([1, -1, 7])), 't');
  const raw4 = decodeRaw(int4);
  assert.deepEqual([...raw4], [0xf1, 0x07]);
  const int2 = encodeTensor(makeTensor('int2', [5], Int8Array.from([1, -2, 0, -1, 1])), 't');
  assert.deepEqual([...decodeRaw(int2)], [1 | (2 << 2) | (0 << 4) | (3 << 6), 1]);
  const uint2 = encodeTensor(makeTensor('uint2', [6], Uint8Array.from([3, 2, 1, 0, 3, 3])), 't');
  assert.deepEqual([...decodeRaw(uint2)], [3 | (2 << 2) | (1 << 4), 3 | (3 << 2)]);
});

/** The raw_data bytes of an encoded TensorProto. */
const decodeRaw = (tensorBytes: Uint8Array): Uint8Array => fromBinaryTensor(tensorBytes).rawData;

test('packed 2- and 4-bit tensors round-trip bit-exact for every length 0..17', () => {
  const r = rng(5);
  for (const dtype of ['int4', 'uint4', 'int2', 'uint2'] as const) {
    const [lo, hi] = intRange[dtype]!;
    for (let n = 0; n <= 17; n++) {
      const vals = Array.from({ length: n }, () => lo + Math.floor(((r() + 1) / 2) * (hi - lo + 1)));
      const Arr = dtype.startsWith('u') ? Uint8Array : Int8Array;
      const t = makeTensor(dtype, [n], Arr.from(vals) as Int8Array & Uint8Array) as Tensor;
      const bytes = encodeTensor(t, 'x');
      const perByte = dtype.endsWith('4') ? 2 : 4;
      assert.equal(fromBinaryTensor(bytes).rawData.length, Math.ceil(n / perByte), `${dtype} n=${n} packed length`);
      const back = decodeTensor(bytes);
      assert.equal(back.dtype, dtype);
      assert.deepEqual(Array.from(back.data as ArrayLike<number>), vals, `${dtype} n=${n}`);
    }
  }
});

test('packing refuses values outside the dtype range', () => {
  assert.throws(() => encodeTensor(makeTensor('int4', [2], Int8Array.from([3, 8])), 'w'), (e: unknown) => isTtaqError(e) && e.code === 'ONNX_INVALID_GRAPH' && /outside the int4 range/.test(e.message));
  assert.throws(() => encodeTensor(makeTensor('uint2', [1], Uint8Array.from([4])), 'w'), (e: unknown) => isTtaqError(e) && e.code === 'ONNX_INVALID_GRAPH');
});

test('every TensorProto data layout decodes: typed fields and raw_data', () => {
  const tp = (fields: Record<string, unknown>) => toBinary(TensorProtoSchema, create(TensorProtoSchema, fields as never));
  const vals = (t: Tensor) => Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
  assert.deepEqual(vals(decodeTensor(tp({ dims: [3n], dataType: 1, floatData: [1.5, -2, 3] }))), [1.5, -2, 3]);
  assert.deepEqual(vals(decodeTensor(tp({ dims: [2n], dataType: 11, doubleData: [0.1, -7] }))), [0.1, -7]);
  assert.deepEqual(vals(decodeTensor(tp({ dims: [2n], dataType: 7, int64Data: [5n, -(2n ** 40n)] }))), [5, -(2 ** 40)]);
  assert.deepEqual(vals(decodeTensor(tp({ dims: [2n], dataType: 13, uint64Data: [2n ** 40n, 1n] }))), [2 ** 40, 1]);
  assert.deepEqual(vals(decodeTensor(tp({ dims: [2n], dataType: 12, uint64Data: [4000000000n, 1n] }))), [4000000000, 1]);
  for (const [dataType, dtype, v] of [[6, 'int32', [-5, 70000]], [3, 'int8', [-128, 127]], [2, 'uint8', [0, 255]], [5, 'int16', [-300, 300]], [4, 'uint16', [65535, 1]], [9, 'bool', [1, 0]], [10, 'float16', [0x3c00, 0xc000]]] as const) {
    const t = decodeTensor(tp({ dims: [2n], dataType, int32Data: [...v] }));
    assert.equal(t.dtype, dtype);
    assert.deepEqual(vals(t), [...v], dtype);
  }
  // int4 in int32_data: one packed byte per entry (two elements).
  const i4 = decodeTensor(tp({ dims: [3n], dataType: 22, int32Data: [0xf1, 0x07] }));
  assert.deepEqual(vals(i4), [1, -1, 7]);
  const u2 = decodeTensor(tp({ dims: [5n], dataType: 25, int32Data: [0b11100100, 0b10] }));
  assert.deepEqual(vals(u2), [0, 1, 2, 3, 2]);
  // raw_data at an unaligned offset inside the message still decodes.
  const raw = new Uint8Array(new Float32Array([1, 2, 3]).buffer);
  assert.deepEqual(vals(decodeTensor(tp({ name: 'odd', dims: [3n], dataType: 1, rawData: raw }))), [1, 2, 3]);
  const i64 = new Uint8Array(new BigInt64Array([-1n, 9n]).buffer);
  assert.deepEqual(vals(decodeTensor(tp({ dims: [2n], dataType: 7, rawData: i64 }))), [-1, 9]);
  // Wrong sizes are an error naming the tensor.
  assert.throws(() => decodeTensor(tp({ name: 'w', dims: [4n], dataType: 1, floatData: [1] })), (e: unknown) => isTtaqError(e) && e.code === 'ONNX_INVALID_GRAPH' && /'w'/.test(e.message));
  assert.throws(() => decodeTensor(tp({ name: 'bf', dims: [1n], dataType: 16, int32Data: [1] })), (e: unknown) => isTtaqError(e) && e.code === 'ONNX_UNSUPPORTED_DTYPE' && /BFLOAT16/.test(e.message));
});

test('external data is a clear error naming the tensor and the way out', () => {
  const b = new GraphBuilder();
  b.input('x', 'float32', [2]);
  b.output(b.op1('Relu', ['x']), 'float32', [2]);
  const bytes = encodeModel(model(b));
  const m = fromBinaryModel(bytes);
  m.graph!.initializer.push(create(TensorProtoSchema, {
    name: 'big_w', dims: [2n], dataType: 1, dataLocation: TensorProto_DataLocation.EXTERNAL,
    externalData: [create(StringStringEntryProtoSchema, { key: 'location', value: 'weights.bin' })],
  }));
  const r = decodeModel(toBinaryModel(m), 'ext.onnx');
  assert.equal(r.ok, false);
  if (!r.ok) {
    assert.equal(r.error.code, 'ONNX_EXTERNAL_DATA');
    assert.match(r.error.message, /big_w/);
    assert.match(r.error.message, /weights\.bin/);
    assert.match(r.error.message, /save_as_external_data=False/);
  }
});

test('attributes of every kind round-trip; sub-graph attributes stay opaque and still run', async () => {
  const b = new GraphBuilder();
  b.input('x', 'float32', [2]);
  b.input('cond', 'bool', []);
  const y = b.op1('Relu', ['x']);
  // A node in a custom domain carrying all plain attribute kinds (not run, only encoded).
  b.op('Fancy', [y], {
    f: A.float(0.25), i: A.int(-3), s: A.str('héllo'), t: A.tensor(f32([2], [1, 2])),
    fs: A.floats([0.5, 1.5]), is: A.ints([1, 2, 9007199254740991]), ss: A.strings(['a', 'b']),
    big: A.int(Number.MAX_SAFE_INTEGER * 2048),
  }, { domain: 'test.custom', name: 'fancy' });
  // An If node whose branches are sub-graphs, built as raw protos.
  const branch = (v: number) => create(GraphProtoSchema, {
    name: `branch_${v}`,
    node: [create(NodeProtoSchema, { opType: 'Constant', output: [`c${v}`], attribute: [create(AttributeProtoSchema, { name: 'value', type: AttributeProto_AttributeType.TENSOR, t: create(TensorProtoSchema, { dims: [2n], dataType: 1, floatData: [v, v] }) })] })],
    output: [create(ValueInfoProtoSchema, { name: `c${v}`, type: create(TypeProtoSchema, { value: { case: 'tensorType', value: create(TypeProto_TensorSchema, { elemType: 1 }) } }) })],
  });
  const graphAttr = (name: string, v: number) => toBinary(AttributeProtoSchema, create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.GRAPH, g: branch(v) }));
  const picked = b.op1('If', ['cond'], { then_branch: { kind: 'opaque', value: graphAttr('then_branch', 7) }, else_branch: { kind: 'opaque', value: graphAttr('else_branch', -7) } });
  const out = b.op1('Add', [y, picked], {}, { outputNames: ['out'] });
  b.output(out, 'float32', [2]);
  const m = model(b, 17, 8);
  const m2 = unwrap(decodeModel(encodeModel(m)));
  const fancy = m2.graph.nodes.find((n) => n.name === 'fancy')!;
  assert.equal(fancy.domain, 'test.custom');
  assert.deepEqual(fancy.attrs.f, { kind: 'float', value: 0.25 });
  assert.deepEqual(fancy.attrs.i, { kind: 'int', value: -3 });
  assert.deepEqual(fancy.attrs.s, { kind: 'string', value: 'héllo' });
  assert.deepEqual(fancy.attrs.fs, { kind: 'floats', value: [0.5, 1.5] });
  assert.deepEqual(fancy.attrs.is, { kind: 'ints', value: [1, 2, 9007199254740991] });
  assert.deepEqual(fancy.attrs.ss, { kind: 'strings', value: ['a', 'b'] });
  const t = fancy.attrs.t!;
  assert.ok(t.kind === 'tensor' && t.value.dtype === 'float32' && Array.from(t.value.data).join() === '1,2');
  // Past int64: clamped to INT64_MAX when encoded (2^63 read back).
  assert.deepEqual(fancy.attrs.big, { kind: 'int', value: 2 ** 63 });
  const ifNode = m2.graph.nodes.find((n) => n.opType === 'If')!;
  assert.equal(ifNode.attrs.then_branch!.kind, 'opaque');
  assert.deepEqual(encodeModel(m2), encodeModel(m));
  // Run the If part only (drop the custom node, which onnxruntime cannot run).
  const runnable: Model = { ...m2, graph: { ...m2.graph, nodes: m2.graph.nodes.filter((n) => n.name !== 'fancy') } };
  const x = f32([2], [1, -1]);
  const yes = await runAll(runnable, { x, cond: makeTensor('bool', [], Uint8Array.from([1])) });
  const no = await runAll(runnable, { x, cond: makeTensor('bool', [], Uint8Array.from([0])) });
  assert.deepEqual(Array.from(yes.out!.data as Float32Array), [8, 7]);
  assert.deepEqual(Array.from(no.out!.data as Float32Array), [-6, -7]);
});

test('loadModel/saveModel round-trip through a file; missing files name the path', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ttaq-codec-'));
  const p = join(dir, 'm.onnx');
  const m = smallCnn(4);
  await saveModel(p, m);
  const back = await loadModel(p);
  assert.deepEqual(encodeModel(back), encodeModel(m));
  await assert.rejects(loadModel(join(dir, 'nope.onnx')), (e: unknown) => isTtaqError(e) && e.code === 'ONNX_READ_FAILED' && e.message.includes('nope.onnx'));
  await assert.rejects(saveModel(join(dir, 'no', 'such', 'dir.onnx'), m), (e: unknown) => isTtaqError(e) && e.code === 'ONNX_WRITE_FAILED');
});

test('bad inputs get their error codes: truncated, not ONNX, bad opset, bad IR version', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ttaq-bad-'));
  const good = encodeModel(smallCnn());
  const code = (bytes: Uint8Array) => {
    const r = decodeModel(bytes, 'f.onnx');
    return r.ok ? 'ok' : r.error.code;
  };
  for (const cut of [0.3, 0.5, 0.9, 0.999]) assert.equal(code(good.subarray(0, Math.floor(good.length * cut))), 'ONNX_TRUNCATED', `cut at ${cut}`);
  const png = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0]);
  assert.equal(code(png), 'ONNX_NOT_A_MODEL');
  assert.equal(code(new TextEncoder().encode('hello, this is a text file\nnot a model\n')), 'ONNX_NOT_A_MODEL');
  assert.equal(code(new TextEncoder().encode('{"json": true}')), 'ONNX_NOT_A_MODEL');
  assert.equal(code(new Uint8Array(0)), 'ONNX_NOT_A_MODEL');
  const b = new GraphBuilder();
  b.input('x', 'float32', [2]);
  b.output(b.op1('Relu', ['x']), 'float32', [2]);
  for (const [opset, ir, want] of [[5, 8, 'ONNX_UNSUPPORTED_OPSET'], [27, 10, 'ONNX_UNSUPPORTED_OPSET'], [26, 13, 'ok'], [7, 3, 'ok'], [13, 2, 'ONNX_UNSUPPORTED_IR_VERSION'], [13, 14, 'ONNX_UNSUPPORTED_IR_VERSION']] as const) {
    assert.equal(code(encodeModel(model(b, opset, ir))), want, `opset ${opset} ir ${ir}`);
  }
  const r = decodeModel(encodeModel(model(b, 27, 10)), 'future.onnx');
  assert.ok(!r.ok && /future\.onnx/.test(r.error.message) && /opsets 7 to 26/.test(r.error.message));
  // Through loadModel, the error carries the file name.
  const p = join(dir, 'half.onnx');
  await writeFile(p, good.subarray(0, good.length >> 1));
  await assert.rejects(loadModel(p), (e: unknown) => isTtaqError(e) && e.code === 'ONNX_TRUNCATED' && e.message.includes('half.onnx'));
});

test('decoding normalises old-style files: unnamed nodes get unique names, initializers listed as inputs are not inputs', () => {
  const vi = (name: string) => create(ValueInfoProtoSchema, { name, type: create(TypeProtoSchema, { value: { case: 'tensorType', value: create(TypeProto_TensorSchema, { elemType: 1 }) } }) });
  const mp = create(ModelProtoSchema, {
    irVersion: 3n,
    opsetImport: [{ domain: 'ai.onnx', version: 9n } as never],
    graph: create(GraphProtoSchema, {
      name: 'old',
      node: [
        create(NodeProtoSchema, { opType: 'Relu', input: ['x'], output: ['a'] }),
        create(NodeProtoSchema, { name: 'Relu_0', opType: 'Add', input: ['a', 'w'], output: ['b'] }),
        create(NodeProtoSchema, { opType: 'Relu', input: ['b'], output: ['c'] }),
      ],
      input: [vi('x'), vi('w')],
      output: [vi('c')],
      initializer: [create(TensorProtoSchema, { name: 'w', dims: [1n], dataType: 1, floatData: [2] })],
    }),
  });
  const m = unwrap(decodeModel(toBinary(ModelProtoSchema, mp)));
  const names = m.graph.nodes.map((n) => n.name);
  assert.equal(new Set(names).size, 3, names.join());
  assert.equal(names[1], 'Relu_0');
  assert.deepEqual(m.graph.inputs.map((v) => v.name), ['x']);
  assert.deepEqual(m.opsetImports, [{ domain: '', version: 9 }]);
});

test('decodeModel copies float data out of a Node Buffer at an unaligned offset', () => {
  const m = smallCnn();
  const bytes = encodeModel(m);
  // A Buffer view that starts 1 byte into a larger allocation, as Buffer pools hand them out.
  const backing = Buffer.alloc(bytes.length + 1);
  backing.set(bytes, 1);
  const decoded = unwrap(decodeModel(backing.subarray(1)));
  assert.ok(m.graph.initializers.size > 0);
  for (const [name, t] of m.graph.initializers) {
    const d = decoded.graph.initializers.get(name);
    assert.ok(d, name);
    assert.deepEqual(Array.from(d.data as ArrayLike<number>), Array.from(t.data as ArrayLike<number>), name);
  }
});
