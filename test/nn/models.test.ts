import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildNet, countParams, Rng, withInitializers } from '../../sdk/nn/index.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import { createSession } from '../../sdk/runtime/index.ts';

// ResNet-20 for 1x28x28 input, by hand (no conv biases, BN gamma+beta, projection shortcuts).
function resnet20ParamsByHand(): number {
  const conv = (cin: number, cout: number, k: number): number => cin * cout * k * k;
  const bn = (c: number): number => 2 * c;
  let n = conv(1, 16, 3) + bn(16); // stem
  n += 3 * (2 * conv(16, 16, 3) + 2 * bn(16)); // stage 1
  n += conv(16, 32, 3) + conv(32, 32, 3) + 2 * bn(32) + conv(16, 32, 1) + bn(32); // stage 2, block 1
  n += 2 * (2 * conv(32, 32, 3) + 2 * bn(32));
  n += conv(32, 64, 3) + conv(64, 64, 3) + 2 * bn(64) + conv(32, 64, 1) + bn(64); // stage 3, block 1
  n += 2 * (2 * conv(64, 64, 3) + 2 * bn(64));
  n += 64 * 10 + 10; // head
  return n;
}

test('ResNet-20 parameter count matches the hand count (272,186)', () => {
  const net = buildNet({ arch: 'resnet20' }, 'infer');
  const expected = resnet20ParamsByHand();
  assert.equal(expected, 272186);
  assert.equal(countParams(net).trainable, expected);
  // 19 convs + 2 projection shortcuts each followed by BN.
  assert.equal(net.bns.length, 21);
  assert.equal(net.model.graph.nodes.filter((n) => n.opType === 'Conv').length, 21);
  assert.equal(net.model.graph.nodes.filter((n) => n.opType === 'BatchNormalization').length, 21);
  assert.deepEqual(net.bns.slice(0, 3).map((b) => b.node), ['stem.bn', 'layer1.0.bn1', 'layer1.0.bn2']);
  assert.ok(net.bns.some((b) => b.node === 'layer2.0.shortcut.bn'));
  // MACs per image: convs at 28/14/7 plus the head, about 31 M.
  assert.ok(net.macs > 30e6 && net.macs < 32e6, `macs ${net.macs}`);
});

test('same seed gives the same initial parameters in both forms; other seeds differ', () => {
  const a = buildNet({ arch: 'resnet20', seed: 7 }, 'infer').model.graph.initializers;
  const b = buildNet({ arch: 'resnet20', seed: 7 }, 'train').model.graph.initializers;
  const c = buildNet({ arch: 'resnet20', seed: 8 }, 'infer').model.graph.initializers;
  const w = 'layer2.1.conv1.weight';
  assert.deepEqual(a.get(w)!.data, b.get(w)!.data);
  assert.notDeepEqual(a.get(w)!.data, c.get(w)!.data);
  // Kaiming normal: std sqrt(2 / fan_in) = sqrt(2 / 288) = 0.0833 for 32x32x3x3.
  const d = a.get(w)!.data as Float32Array;
  let s = 0;
  for (const v of d) s += v * v;
  assert.ok(Math.abs(Math.sqrt(s / d.length) - Math.sqrt(2 / 288)) < 0.005);
  assert.deepEqual([...(a.get('stem.bn.scale')!.data as Float32Array)], new Array(16).fill(1));
  assert.deepEqual([...(a.get('stem.bn.var')!.data as Float32Array)], new Array(16).fill(1));
});

test('MobileNet-style net: depthwise convs, ReLU6 via Clip, residual adds, sensible size', () => {
  const net = buildNet({ arch: 'mobilenet' }, 'infer');
  const nodes = net.model.graph.nodes;
  const dw = nodes.filter((n) => n.opType === 'Conv' && n.name.endsWith('.dw'));
  assert.equal(dw.length, 8);
  for (const n of dw) {
    const w = net.model.graph.initializers.get(n.inputs[1]!)!;
    assert.equal(w.dims[1], 1, `${n.name} is depthwise`);
    assert.equal(n.attrs.group?.kind === 'int' && n.attrs.group.value, w.dims[0]);
  }
  assert.ok(nodes.filter((n) => n.opType === 'Clip').length >= 10);
  // Residual adds only where stride 1 and channels match (block1.0 is 16 -> 16 at stride 1).
  assert.deepEqual(nodes.filter((n) => n.opType === 'Add').map((n) => n.name), ['block1.0.add', 'block2.1.add', 'block3.1.add', 'block3.2.add', 'block4.1.add']);
  // Linear bottleneck: no activation after the projection BN.
  const projOut = 'block2.0.project_bn.out';
  assert.ok(!nodes.some((n) => n.inputs.includes(projOut) && (n.opType === 'Clip' || n.opType === 'Relu')));
  const { trainable } = countParams(net);
  assert.ok(trainable > 100e3 && trainable < 300e3, `params ${trainable}`);
  assert.ok(net.macs > 5e6 && net.macs < 20e6, `macs ${net.macs}`);
});

test('both forms run in onnxruntime with the right shapes; train form outputs batch statistics', async () => {
  const N = 4;
  const x = new Float32Array(N * 28 * 28);
  const rng = new Rng(1);
  for (let i = 0; i < x.length; i++) x[i] = rng.normal();
  for (const arch of ['resnet20', 'mobilenet'] as const) {
    const inf = buildNet({ arch }, 'infer');
    const s = await createSession(inf.model, { providers: ['cpu'], intraOpThreads: 1 });
    const out = await s.run({ input: f32([N, 1, 28, 28], x) });
    assert.deepEqual(out.logits!.dims, [N, 10]);
    assert.ok([...(out.logits!.data as Float32Array)].every(Number.isFinite));
    await s.release();

    const tr = buildNet({ arch }, 'train');
    const t = await createSession(tr.model, { providers: ['cpu'], intraOpThreads: 1 });
    const r = await t.run({ input: f32([N, 1, 28, 28], x) });
    assert.deepEqual(r.logits!.dims, [N, 10]);
    // The stem BN sees conv(x) with Kaiming weights: batch mean near 0, variance clearly positive.
    const stem = tr.bns[0]!;
    const bm = r[stem.batchMean]!.data as Float32Array;
    const bv = r[stem.batchVar]!.data as Float32Array;
    assert.equal(bm.length, 16);
    assert.ok(bv.every((v) => v > 0.05 && v < 20), `batch var ${[...bv]}`);
    // The decomposed BN form (primitive ops) must give the same statistics and logits.
    const dec = buildNet({ arch, bnTraining: 'decomposed' }, 'train');
    const d = await createSession(dec.model, { providers: ['cpu'], intraOpThreads: 1 });
    const rd = await d.run({ input: f32([N, 1, 28, 28], x) });
    const maxDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
    assert.ok(maxDiff(rd[stem.batchMean]!.data as Float32Array, bm) < 1e-4);
    assert.ok(maxDiff(rd[stem.batchVar]!.data as Float32Array, bv) < 1e-3);
    assert.ok(maxDiff(rd.logits!.data as Float32Array, r.logits!.data as Float32Array) < 1e-3);
    await t.release();
    await d.release();
  }
});

test('inference form uses the running statistics it is given', async () => {
  const net = buildNet({ arch: 'resnet20', batch: 2 }, 'infer');
  const x = f32([2, 1, 28, 28], new Float32Array(2 * 784).fill(0.5));
  const base = await (await createSession(net.model, { providers: ['cpu'] })).run({ input: x });
  // Shift the stem BN's running mean: logits must change.
  const m = withInitializers(net.model, new Map([['stem.bn.mean', f32([16], new Float32Array(16).fill(0.3))]]));
  const moved = await (await createSession(m, { providers: ['cpu'] })).run({ input: x });
  const a = base.logits!.data as Float32Array;
  const b = moved.logits!.data as Float32Array;
  assert.ok(a.some((v, i) => Math.abs(v - b[i]!) > 1e-4));
  assert.throws(() => withInitializers(net.model, new Map([['stem.bn.mean', f32([8], new Float32Array(8))]])), /model has float32\[16\]/);
  assert.throws(() => withInitializers(net.model, new Map([['nope', f32([1], [0])]])), (e: Error & { code?: string }) => e.code === 'STATE_MISMATCH');
});

test('Rng: deterministic, resumable from its state, sane moments', () => {
  const a = new Rng(42);
  for (let i = 0; i < 7; i++) a.normal();
  const st = a.state();
  const b = Rng.fromState(JSON.parse(JSON.stringify(st)));
  for (let i = 0; i < 5; i++) assert.equal(a.normal(), b.normal());
  const r = new Rng(3);
  let s = 0;
  let s2 = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) { const v = r.normal(); s += v; s2 += v * v; }
  assert.ok(Math.abs(s / n) < 0.03 && Math.abs(s2 / n - 1) < 0.05);
  assert.throws(() => Rng.fromState({ words: [0, 0, 0, 0] }), /not all zero/);
});
