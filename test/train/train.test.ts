import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkModelHash, readManifest } from '../../sdk/manifest/index.ts';
import { Rng } from '../../sdk/nn/index.ts';
import { Sgd } from '../../sdk/optim/index.ts';
import { loadModel } from '../../sdk/onnx/io.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import { createSession } from '../../sdk/runtime/index.ts';
import {
  configOfCheckpoint, DEFAULT_CONFIG, decodeCheckpoint, encodeCheckpoint, exportModel, fillBatch, loadCheckpoint, lrAt, normTables,
  runTraining, Trainer, type ImageSet, type TrainConfig,
} from '../../sdk/train/index.ts';

// Generated data: 12x12 grayscale, 3 classes told apart by where a bright bar sits (top, middle,
// bottom rows), with noise. Learnable in a few steps, not by chance.
function bars(count: number, seed: number): ImageSet {
  const H = 12;
  const r = new Rng(seed);
  const images = new Uint8Array(count * H * H);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const y = r.int(3);
    labels[i] = y;
    for (let p = 0; p < H * H; p++) {
      const row = Math.floor(p / H);
      const on = row >= 1 + 4 * y && row < 3 + 4 * y;
      images[i * H * H + p] = Math.min(255, (on ? 180 : 20) + r.int(60));
    }
  }
  return { count, height: H, width: H, channels: 1, images, labels };
}

const config = (o: Partial<TrainConfig> = {}): TrainConfig => ({
  ...DEFAULT_CONFIG, arch: 'resnet20', epochs: 3, batchSize: 16, lr: 0.05, numClasses: 3,
  channels: 1, height: 12, width: 12, mean: [0.3], std: [0.3], augment: { pad: 1, flip: false }, seed: 3, ...o,
});

const session = { intraOpThreads: 1, providers: ['cpu' as const] };
const BUNDLED_CKPT = new URL('../../models/checkpoints/resnet20-fmnist-24ep.ckpt', import.meta.url).pathname;

test('fillBatch: crop offsets, flip and normalisation by hand', () => {
  // One 3x3 image 1..9; pad 1; normalisation v/255 with mean 0, std 1/255 -> raw bytes back.
  const s: ImageSet = { count: 1, height: 3, width: 3, channels: 1, images: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]), labels: [0] };
  const tables = normTables(1, [0], [1 / 255]);
  const out = new Float32Array(9);
  fillBatch(s, [0], out, tables);
  assert.deepEqual([...out].map(Math.round), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  // Find a seed whose draws give dy = +1, dx = -1 and a flip, then check the copy.
  for (let seed = 0; seed < 200; seed++) {
    const probe = new Rng(seed);
    const dy = probe.int(3) - 1;
    const dx = probe.int(3) - 1;
    const flip = probe.uniform() < 0.5;
    if (dy !== 1 || dx !== -1 || !flip) continue;
    fillBatch(s, [0], out, tables, { pad: 1, flip: true }, new Rng(seed));
    // out[y][x] = img[y+1][(2-x)-1], zero outside.
    assert.deepEqual([...out].map(Math.round), [5, 4, 0, 8, 7, 0, 0, 0, 0]);
    return;
  }
  assert.fail('no seed with the wanted draws');
});

test('cosine and step schedules', () => {
  const c = { kind: 'cosine' as const, baseLr: 0.1, totalSteps: 100 };
  assert.equal(lrAt(c, 0), 0.1);
  assert.ok(Math.abs(lrAt(c, 50) - 0.05) < 1e-12);
  assert.ok(lrAt(c, 99) < 1e-3);
  assert.ok(Math.abs(lrAt({ ...c, warmupSteps: 10 }, 4) - 0.05) < 1e-12);
  const s = { kind: 'step' as const, baseLr: 0.1, totalSteps: 100 };
  assert.ok(Math.abs(lrAt(s, 49) - 0.1) < 1e-12 && Math.abs(lrAt(s, 50) - 0.01) < 1e-12 && Math.abs(lrAt(s, 80) - 0.001) < 1e-12);
});

test('the trainer\'s SGD (sdk/optim) matches PyTorch semantics on a hand-computed case', () => {
  const p = new Map([['w', Float32Array.from([1, -2])]]);
  const g = new Map([['w', Float32Array.from([0.5, 0.5])]]);
  const sgd = new Sgd({ lr: 0.1, momentum: 0.9, weightDecay: 0.1 });
  sgd.step(p, g, 0.1); // g' = [0.6, 0.3]; v = g'; p = [0.94, -2.03]
  sgd.step(p, g, 0.1); // g' = [0.594, 0.297]; v = [1.134, 0.567]; p = [0.8266, -2.0867]
  const w = p.get('w')!;
  assert.ok(Math.abs(w[0]! - 0.8266) < 1e-5 && Math.abs(w[1]! + 2.0867) < 1e-5, `${[...w]}`);
});

test('a tiny training run: loss falls, BN running statistics move, checkpoint + resume is exact, export validates', async () => {
  const train = bars(96, 1);
  const testSet = bars(48, 2);
  const dir = await mkdtemp(join(tmpdir(), 'ttaq-train-'));

  // Uninterrupted: 3 epochs.
  const a = await Trainer.create(config(), { train, test: testSet }, { session });
  const before = await a.evaluate(testSet);
  const hist = await runTraining(a);
  assert.equal(hist.length, 3);
  assert.ok(hist[2]!.trainLoss < hist[0]!.trainLoss, `train loss ${hist.map((h) => h.trainLoss.toFixed(3))}`);
  assert.ok(hist[2]!.testLoss! < before.loss, `test loss ${before.loss.toFixed(3)} -> ${hist[2]!.testLoss!.toFixed(3)}`);
  assert.ok(hist[2]!.imagesPerSec > 0 && hist[2]!.runtimeShare > 0 && hist[2]!.runtimeShare <= 1);
  const rv = a.stats.get('stem.bn.var')!;
  assert.ok(rv.some((v) => Math.abs(v - 1) > 0.01), 'running variance moved from 1');

  // Interrupted after epoch 1, checkpointed to disk, resumed in a fresh trainer.
  const ckPath = join(dir, 'run.ckpt');
  const b = await Trainer.create(config(), { train, test: testSet }, { session });
  await runTraining(b, { checkpointPath: ckPath, maxEpochs: 1 });
  assert.equal(b.epoch, 1);
  await b.release();
  const c = await Trainer.create(config(), { train, test: testSet }, { session });
  c.restore(await loadCheckpoint(ckPath), ckPath);
  assert.equal(c.epoch, 1);
  await runTraining(c);
  for (const [k, v] of a.params) assert.deepEqual(c.params.get(k), v, `parameter ${k} after resume`);
  for (const [k, v] of a.stats) assert.deepEqual(c.stats.get(k), v, `statistic ${k} after resume`);
  assert.equal(c.history.length, 3);

  // Export: inference form with BN nodes, manifest hash and accuracy agree with the trainer.
  const out = join(dir, 'tiny.onnx');
  const { manifest, manifestPath } = await exportModel(out, c.inferenceModel(), {
    name: 'tiny', labels: ['top', 'middle', 'bottom'], channels: 1, height: 12, width: 12, mean: [0.3], std: [0.3],
    bnNodes: c.net.bns.map((x) => x.node), command: 'test', metrics: { testAccuracy: c.history[2]!.testAccuracy! },
  });
  const m2 = await readManifest(manifestPath);
  assert.deepEqual(m2.adaptation.bnNodes, manifest.adaptation.bnNodes);
  checkModelHash(m2, new Uint8Array(await readFile(out)), out);
  const model = await loadModel(out);
  const bnNodes = model.graph.nodes.filter((n) => n.opType === 'BatchNormalization').map((n) => n.name);
  assert.deepEqual(bnNodes, m2.adaptation.bnNodes);
  const s = await createSession(model, session);
  const x = new Float32Array(testSet.count * 144);
  fillBatch(testSet, Int32Array.from({ length: testSet.count }, (_, i) => i), x, normTables(1, [0.3], [0.3]));
  const z = (await s.run({ input: f32([testSet.count, 1, 12, 12], x) })).logits!.data as Float32Array;
  let correct = 0;
  for (let i = 0; i < testSet.count; i++) {
    const row = [...z.subarray(i * 3, i * 3 + 3)];
    if (row.indexOf(Math.max(...row)) === testSet.labels[i]) correct++;
  }
  assert.ok(Math.abs(correct / testSet.count - m2.provenance.metrics.testAccuracy!) < 1e-9);
  await Promise.all([a.release(), c.release(), s.release()]);
});

test('a checkpoint written by the earlier trainer (own SGD) restores and re-encodes byte for byte', { skip: !existsSync(BUNDLED_CKPT) && `${BUNDLED_CKPT} absent` }, async () => {
  // The bundled 24-epoch run's checkpoint predates the switch to sdk/optim's SGD; resuming it must
  // read the same momentum buffers and step count and write the same layout back.
  const bytes = new Uint8Array(await readFile(BUNDLED_CKPT));
  const ck = decodeCheckpoint(bytes, BUNDLED_CKPT);
  const cfg = configOfCheckpoint(ck, BUNDLED_CKPT);
  const r = new Rng(5);
  const n = cfg.batchSize;
  const images = Uint8Array.from({ length: n * cfg.channels * cfg.height * cfg.width }, () => r.int(256));
  const t = await Trainer.create(cfg, { train: { count: n, height: cfg.height, width: cfg.width, channels: cfg.channels, images, labels: Uint8Array.from({ length: n }, () => r.int(cfg.numClasses)) } }, { session });
  t.restore(ck, BUNDLED_CKPT);
  assert.ok(t.sgd.steps > 0 && t.step > 0);
  const again = encodeCheckpoint(t.checkpoint());
  assert.equal(again.length, bytes.length);
  assert.ok(Buffer.from(again).equals(Buffer.from(bytes)), 're-encoded checkpoint differs from the file');
  await t.release();
});

test('checkpoint codec round-trips and rejects foreign files', () => {
  const ck = { meta: { format: 'x', n: 1 }, tensors: new Map([['a', { dims: [2], data: Float32Array.from([1.5, -2]) }], ['b', { dims: [1, 3], data: Float32Array.from([0, 1, 2]) }]]) };
  const back = decodeCheckpoint(encodeCheckpoint(ck));
  assert.deepEqual(back.meta, ck.meta);
  assert.deepEqual([...back.tensors.get('b')!.data], [0, 1, 2]);
  assert.throws(() => decodeCheckpoint(new Uint8Array(20)), (e: Error & { code?: string }) => e.code === 'STATE_MISMATCH' && /magic/.test(e.message));
});

test('bad config and data fail with coded errors', async () => {
  await assert.rejects(Trainer.create(config({ batchSize: 1 }), { train: bars(8, 1) }), /batch must be an integer >= 2/);
  await assert.rejects(Trainer.create(config({ batchSize: 16 }), { train: bars(8, 1) }), /fewer than one batch/);
  await assert.rejects(Trainer.create(config({ numClasses: 2 }), { train: bars(40, 1) }), (e: Error & { code?: string }) => e.code === 'DATA_BAD_FORMAT');
  // a zero std divides the pixels by zero: refused before the first step turns the loss into NaN
  await assert.rejects(Trainer.create(config({ std: [0] }), { train: bars(40, 1) }), (e: Error & { code?: string }) => e.code === 'CONFIG_INVALID' && /std must be > 0 in every channel, got 0/.test(e.message));
});

test('data-parallel training (2 slices of each batch on 2 threads) learns as one session does', async () => {
  const train = bars(96, 1);
  const testSet = bars(48, 2);
  const t = await Trainer.create(config(), { train, test: testSet }, { session, workers: 2 });
  const before = await t.evaluate(testSet);
  const hist = await runTraining(t);
  assert.ok(hist[2]!.trainLoss < hist[0]!.trainLoss, `train loss ${hist.map((h) => h.trainLoss.toFixed(3))}`);
  assert.ok(hist[2]!.testLoss! < before.loss, `test loss ${before.loss.toFixed(3)} -> ${hist[2]!.testLoss!.toFixed(3)}`);
  assert.ok(hist[2]!.testAccuracy! > 0.9, `test accuracy ${hist[2]!.testAccuracy}`);
  // per-sample logits came back whole (accuracy counted over every image of each batch)
  assert.ok(hist[2]!.trainAccuracy > 0 && hist[2]!.trainAccuracy <= 1);
  await t.release();
});
