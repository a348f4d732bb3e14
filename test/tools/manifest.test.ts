// `ttaq manifest` and describeModel: a manifest for a model of one's own, with what the graph says
// checked against what the user gives.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { describeModel, FASHION_MNIST_LABELS, readManifest, type DescribeInput } from '../../sdk/manifest/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import type { Dim } from '../../sdk/onnx/types.ts';
import { model, randn, rng } from '../onnx/fixtures.ts';
import { run } from '../../tools/manifest.ts';

const dir = mkdtempSync(join(tmpdir(), 'ttaq-manifest-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A 3-channel classifier (Conv, GlobalAveragePool, Gemm) with the given input dims and no BN. */
function rgbNet(dims: Dim[], classes = 4, extraInput = false) {
  const r = rng(5);
  const b = new GraphBuilder('rgb');
  b.input('images', 'float32', dims);
  if (extraInput) b.input('mask', 'float32', [1]);
  const c = b.op1('Conv', ['images', b.constant(randn(r, [6, dims[1] as number, 3, 3]), 'w')], { pads: A.ints([1, 1, 1, 1]) });
  const f = b.op1('Flatten', [b.op1('GlobalAveragePool', [c])], { axis: A.int(1) });
  const y = b.op1('Gemm', [f, b.constant(randn(r, [classes, 6]), 'fc')], { transB: A.int(1) }, { outputNames: ['scores'] });
  b.output(y, 'float32', [dims[0]!, classes]);
  return model(b);
}

const given = (o: Partial<DescribeInput> = {}): DescribeInput => ({ labels: ['a', 'b', 'c', 'd'], mean: [0.5], std: [0.25], ...o });
const problem = (d: ReturnType<typeof describeModel>): string => (d.ok ? '' : d.problem);

test('describeModel reads names, size, channels and class count from the graph', () => {
  const d = describeModel('nets/rgb.onnx', 'ab'.repeat(32), rgbNet(['batch', 3, 32, 40]), given({ mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], resize: 'letterbox' }));
  assert.ok(d.ok);
  assert.deepEqual(d.manifest.input, { name: 'images', shape: [-1, 3, 32, 40] });
  assert.deepEqual(d.manifest.output, { name: 'scores' });
  assert.equal(d.manifest.name, 'rgb');
  assert.equal(d.manifest.model, 'rgb.onnx');
  assert.deepEqual({ ...d.manifest.preprocess }, { height: 32, width: 40, channels: 3, resize: 'letterbox', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], layout: 'NCHW' });
  assert.ok(d.notes.some((n) => n.includes('no BatchNormalization')), 'a graph without BN gets a note about adaptation');
  // a fixed batch is kept
  const fixed = describeModel('rgb.onnx', 'ab'.repeat(32), rgbNet([1, 3, 8, 8]), given());
  assert.ok(fixed.ok && fixed.manifest.input.shape[0] === 1);
});

test('describeModel refuses what ttaq cannot feed, each time with the way out', () => {
  assert.match(problem(describeModel('m.onnx', 'ab'.repeat(32), rgbNet(['n', 3, 'h', 'w']), given())), /symbolic size .*--size 224x224/);
  const sized = describeModel('m.onnx', 'ab'.repeat(32), rgbNet(['n', 3, 'h', 'w']), given({ size: [24, 24] }));
  assert.ok(sized.ok && sized.manifest.preprocess.height === 24);
  assert.match(problem(describeModel('m.onnx', 'ab'.repeat(32), rgbNet(['n', 3, 16, 16]), given({ size: [24, 24] }))), /disagrees with the graph's 16x16/);
  assert.match(problem(describeModel('m.onnx', 'ab'.repeat(32), rgbNet(['n', 2, 16, 16]), given())), /2 channels; ttaq feeds 1 .* or 3/);
  assert.match(problem(describeModel('m.onnx', 'ab'.repeat(32), rgbNet(['n', 3, 16, 16]), given({ labels: ['a', 'b', 'c'] }))), /4 classes but 3 labels/);
  assert.match(problem(describeModel('m.onnx', 'ab'.repeat(32), rgbNet(['n', 3, 16, 16]), given({ mean: [0.1, 0.2] }))), /--mean has 2 values for a 3-channel input; give 1 or 3/);
  assert.match(problem(describeModel('m.onnx', 'ab'.repeat(32), rgbNet(['n', 3, 16, 16]), given({ std: [0] }))), /--std values must be positive/);
  assert.match(problem(describeModel('m.onnx', 'ab'.repeat(32), rgbNet(['n', 3, 16, 16], 4, true), given())), /2 inputs \(images, mask\)/);
});

test('ttaq manifest rebuilds the bundled model\'s manifest from the graph and the flags; it will not overwrite without --force', async () => {
  const path = join(dir, 'resnet.onnx');
  copyFileSync('models/resnet20-fmnist.onnx', path);
  const labels = join(dir, 'labels.txt');
  writeFileSync(labels, FASHION_MNIST_LABELS.join('\n') + '\n');
  const args = [path, '--labels', labels, '--mean', '0.286', '--std', '0.353'];
  // the command line itself (its stdout is the child's, not the test reporter's)
  const cli = (argv: string[]) => spawnSync(process.execPath, ['bin/ttaq.js', 'manifest', ...argv], { encoding: 'utf8' });
  const first = cli(args);
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /wrote .*resnet\.manifest\.json: input 'input' 1x28x28, output 'logits', 10 classes/);
  const again = cli(args);
  assert.equal(again.status, 2);
  assert.match(again.stderr, /exists; pass --force/);
  assert.equal(cli([...args, '--force', '--name', 'mine']).status, 0);
  const written = await readManifest(join(dir, 'resnet.manifest.json'));
  const bundled = await readManifest('models/resnet20-fmnist.manifest.json');
  assert.equal(written.name, 'mine');
  assert.equal(written.model, 'resnet.onnx');
  assert.equal(written.sha256, bundled.sha256, 'the same bytes hash the same');
  assert.deepEqual([written.input, written.output, written.labels, written.preprocess], [bundled.input, bundled.output, bundled.labels, bundled.preprocess]);
  assert.deepEqual(written.adaptation.bnNodes, [], 'empty: every BatchNormalization node adapts');
  assert.ok(!readFileSync(join(dir, 'resnet.manifest.json'), 'utf8').includes('quantization'));
});

test('ttaq manifest: missing flags and bad values are usage errors naming the flag', async () => {
  const path = join(dir, 'resnet.onnx');
  copyFileSync('models/resnet20-fmnist.onnx', path);
  const cases: [string[], RegExp][] = [
    [[path, '--mean', '0.5', '--std', '0.2'], /--labels is required/],
    [[path, '--labels', 'a,b', '--std', '0.2'], /--mean is required/],
    [[path, '--labels', 'a,b', '--mean', 'x', '--std', '0.2', '--print'], /--mean 'x': expected numbers/],
    [[path, '--labels', 'a,b', '--mean', '0.5', '--std', '0.2', '--print'], /10 classes but 2 labels/],
    [[path, '--labels', 'a,b', '--mean', '0.5', '--std', '0.2', '--size', '28', '--print'], /--size '28': expected HEIGHTxWIDTH/],
    [[path, '--labels', 'a,b', '--mean', '0.5', '--std', '0.2', '--resize', 'squash'], /--resize 'squash' is not one of/],
  ];
  for (const [argv, re] of cases) {
    await assert.rejects(run(argv), (e: unknown) => isTtaqError(e) && e.code === 'CLI_USAGE' && re.test(e.message), re.source);
  }
});
