// Using the ttaq SDK directly (no CLI): load the bundled FP32 model, quantize it to W4A4, corrupt a
// few hundred Fashion-MNIST test images, and compare the quantized model's accuracy on them without
// adaptation and with ABL test-time adaptation. Runs in well under a minute on a laptop CPU:
//
//   node --import tsx examples/sdk-programmatic/main.ts [--images 512] [--method minmax|ttaq] [--iterations 20]
//                                                       [--corruption gaussian_noise] [--severity 5]
//
// Fashion-MNIST comes from $TTAQ_FASHION_MNIST or /usr/share/datasets/fashion-mnist
// (scripts/bootstrap.sh installs it).
import { parseArgs } from 'node:util';
// The package's public surface (sdk/index.ts): entry points by name, modules as namespaces.
import { Adapter, data, DEFAULT_MODEL_PATH, loadModel, manifestPathFor, onnx, quantize, readManifest, type Manifest } from 'ttaq';

const { corruptImages, preprocessBatch, readFashionMnist, take } = data;
const { makeTensor } = onnx;

const { values: a } = parseArgs({
  options: {
    images: { type: 'string', default: '512' }, method: { type: 'string', default: 'minmax' }, iterations: { type: 'string', default: '20' },
    corruption: { type: 'string', default: 'gaussian_noise' }, severity: { type: 'string', default: '5' }, model: { type: 'string', default: DEFAULT_MODEL_PATH },
  },
});
const n = Number(a.images);
const batch = 64;

// 1. The FP32 model and its manifest (preprocessing, labels, BN nodes).
const fp32 = await loadModel(a.model!);
const manifest: Manifest = await readManifest(manifestPathFor(a.model!));

// 2. Data: test images, preprocessed as the manifest says (NCHW float32).
const test = take(await readFashionMnist('test'), n);
const clean = preprocessBatch(test, manifest.preprocess);
const labels = Int32Array.from(test.labels as ArrayLike<number>, Number);

// 3. Quantize to W4A4 (weights 4 bit, activations 4 bit; first/last layer 8 bit by default).
//    minmax is instant; --method ttaq runs block reconstruction with PEM and PCR (--iterations per block).
const t0 = performance.now();
const q = await quantize({
  model: fp32,
  calib: { images: clean.data, dims: clean.dims, labels },
  options: { wBits: 4, aBits: 4, method: a.method as 'minmax', ...(a.method === 'minmax' ? {} : { iterations: Number(a.iterations) }) },
});
console.log(`quantized with ${a.method} in ${((performance.now() - t0) / 1000).toFixed(1)} s; clean accuracy FP32 ${pct(q.report.accuracy?.fp32)}, W4A4 ${pct(q.report.accuracy?.quantized)}`);

// 4. A corrupted copy of the same images (one of the 15 corruptions at a severity 1-5).
const corrupted = preprocessBatch({ ...test, images: corruptImages(test, a.corruption!, Number(a.severity), { seed: 0 }) }, manifest.preprocess);

// 5. Evaluate the quantized model on the corrupted images: source (no adaptation) and ABL.
//    The adapter needs the quantized model's BN nodes (quantize() keeps/inserts them).
const qManifest: Manifest = { ...manifest, input: { name: q.model.graph.inputs[0]!.name, shape: manifest.input.shape }, output: { name: q.model.graph.outputs[0]!.name }, adaptation: { bnNodes: [...q.bnNodes] } };
for (const method of ['source', 'abl:robust']) {
  const adapter = await Adapter.create({ model: q.int8Model, manifest: qManifest, method, session: { providers: ['cpu'] } });
  let correct = 0;
  const per = clean.dims[1] * clean.dims[2] * clean.dims[3];
  for (let i = 0; i < n; i += batch) {
    const m = Math.min(batch, n - i);
    const x = makeTensor('float32', [m, clean.dims[1], clean.dims[2], clean.dims[3]], corrupted.data.slice(i * per, (i + m) * per));
    const r = method === 'source' ? await adapter.infer(x) : await adapter.step(x); // step: predict, then update BN parameters
    for (let j = 0; j < m; j++) if (r.predictions[j] === labels[i + j]) correct++;
  }
  await adapter.close();
  console.log(`${a.corruption} severity ${a.severity}, ${n} images, ${method.padEnd(10)} accuracy ${pct(correct / n)}`);
}

function pct(x: number | undefined): string { return x === undefined ? 'n/a' : `${(100 * x).toFixed(1)} %`; }
