// End to end: a tiny CNN (Conv-BN-Relu-GAP-Gemm, BN on batch statistics) learns to tell vertical
// from horizontal stripes with SGD, gradients from the ONNX gradient graph.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildGradientGraph, copyParams, GradientStep, withSoftmaxCrossEntropy } from '../../sdk/autodiff/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { f32, i64 } from '../../sdk/onnx/tensor.ts';
import { Rng } from '../../sdk/nn/rng.ts';
import { Sgd, Adam } from '../../sdk/optim/index.ts';
import { model, randTensor } from './helpers.ts';

const H = 8;

function tinyCnn(rng: Rng) {
  const b = new GraphBuilder('tiny_cnn');
  b.input('image', 'float32', ['N', 1, H, H]);
  b.initializer('conv.w', randTensor(rng, 'float32', [4, 1, 3, 3], -0.5, 0.5));
  b.initializer('bn.scale', f32([4], [1, 1, 1, 1]));
  b.initializer('bn.bias', f32([4], [0, 0, 0, 0]));
  b.initializer('bn.mean', f32([4], [0, 0, 0, 0]));
  b.initializer('bn.var', f32([4], [1, 1, 1, 1]));
  b.initializer('fc.w', randTensor(rng, 'float32', [2, 4], -0.5, 0.5));
  b.initializer('fc.b', f32([2], [0, 0]));
  const c = b.op1('Conv', ['image', 'conv.w'], { pads: A.ints([1, 1, 1, 1]) }, { name: 'conv' });
  const [bn] = b.op('BatchNormalization', [c, 'bn.scale', 'bn.bias', 'bn.mean', 'bn.var'],
    { training_mode: A.int(1), momentum: A.float(0.9) }, { outputNames: ['bn.out', 'bn.running_mean', 'bn.running_var'], name: 'bn' });
  const r = b.op1('Relu', [bn!], {}, { name: 'relu' });
  const g = b.op1('Flatten', [b.op1('GlobalAveragePool', [r], {}, { name: 'gap' })], {}, { name: 'flatten' });
  b.op('Gemm', [g, 'fc.w', 'fc.b'], { transB: A.int(1) }, { outputNames: ['logits'], name: 'fc' });
  b.output('logits', 'float32', ['N', 2]);
  return model(b);
}

/** Stripes: label 0 vertical (columns alternate), label 1 horizontal; random phase and noise. */
function batch(rng: Rng, n: number): { image: ReturnType<typeof f32>; labels: number[] } {
  const data = new Float32Array(n * H * H);
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const y = rng.uniform() < 0.5 ? 0 : 1;
    labels.push(y);
    const phase = rng.uniform() < 0.5 ? 0 : 1;
    for (let r = 0; r < H; r++) {
      for (let c = 0; c < H; c++) {
        const on = ((y === 0 ? c : r) + phase) % 2;
        data[i * H * H + r * H + c] = on + 0.3 * rng.normal();
      }
    }
  }
  return { image: f32([n, 1, H, H], data), labels };
}

async function train(kind: 'sgd' | 'adam'): Promise<number[]> {
  const rng = new Rng(kind === 'sgd' ? 11 : 12);
  const { model: withLoss, loss } = withSoftmaxCrossEntropy(tinyCnn(rng), 'logits', { labels: 'int64', classes: 2 });
  const wrt = ['conv.w', 'bn.scale', 'bn.bias', 'fc.w', 'fc.b'];
  const gg = await buildGradientGraph({ model: withLoss, loss, wrt, outputs: ['logits', 'bn.running_mean'] });
  const step = await GradientStep.create(gg, { session: { providers: ['cpu'] } });
  const params = copyParams(gg.params);
  const opt = kind === 'sgd' ? new Sgd({ lr: 0.2, momentum: 0.9 }) : new Adam({ lr: 0.05 });
  const losses: number[] = [];
  for (let t = 0; t < 40; t++) {
    const { image, labels } = batch(rng, 16);
    const r = await step.run(params, { image, labels: i64([16], labels) });
    assert.ok(Number.isFinite(r.loss), `step ${t}: loss ${r.loss}`);
    assert.deepEqual(r.outputs['logits']!.dims, [16, 2]);
    losses.push(r.loss);
    opt.step(params, r.grads);
  }
  await step.release();
  if (process.env.SHOW_LOSS) console.log(kind, losses.map((l) => l.toFixed(3)).join(" "));
  return losses;
}

const mean = (xs: number[]): number => xs.reduce((a, v) => a + v, 0) / xs.length;

test('tiny CNN trained with SGD momentum: loss falls below 0.2', async () => {
  const losses = await train('sgd');
  assert.ok(mean(losses.slice(0, 3)) > 0.5, `initial loss ${mean(losses.slice(0, 3))} should be near ln 2`);
  assert.ok(mean(losses.slice(-5)) < 0.2, `final loss ${mean(losses.slice(-5))} (losses ${losses.map((l) => l.toFixed(3)).join(' ')})`);
});

test('tiny CNN trained with Adam: loss falls below 0.2', async () => {
  const losses = await train('adam');
  assert.ok(mean(losses.slice(-5)) < 0.2, `final loss ${mean(losses.slice(-5))} (losses ${losses.map((l) => l.toFixed(3)).join(' ')})`);
});
