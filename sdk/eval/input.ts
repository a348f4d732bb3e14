// Batches of HWC uint8 images to the model's float NCHW input. When the images already have the
// model's size and channel count (Fashion-MNIST, pre-corrupted IDX domains), a tiny onnxruntime
// graph does the work: Cast -> Transpose(NHWC -> NCHW) -> (x / 255 - mean) / std per channel, the
// same formula as sdk/data's preprocessBatch without OpenCV's per-image calls. Other sizes go
// through preprocessBatch (resize, crop, channel conversion).
import { preprocessBatch, type Dataset } from '../data/index.ts';
import type { Preprocess } from '../manifest/index.ts';
import { A, GraphBuilder } from '../onnx/builder.ts';
import { f32, makeTensor } from '../onnx/tensor.ts';
import type { Model, TensorOf } from '../onnx/types.ts';
import { createSession, type Session, type SessionOptions } from '../runtime/index.ts';

function normalizeModel(pre: Preprocess): Model {
  const C = pre.channels;
  const b = new GraphBuilder('normalize');
  const x = b.input('images', 'uint8', ['N', pre.height, pre.width, C]);
  const xf = b.op1('Cast', [x], { to: A.int(1) });
  const nchw = b.op1('Transpose', [xf], { perm: A.ints([0, 3, 1, 2]) });
  const at = (v: readonly number[], k: number): number => v[v.length === 1 ? 0 : k]!;
  const scale = Array.from({ length: C }, (_, k) => 1 / (255 * at(pre.std, k)));
  const shift = Array.from({ length: C }, (_, k) => -at(pre.mean, k) / at(pre.std, k));
  const y = b.op1('Add', [b.op1('Mul', [nchw, b.constant(f32([1, C, 1, 1], scale), 'scale')]), b.constant(f32([1, C, 1, 1], shift), 'shift')]);
  b.op('Identity', [y], {}, { outputNames: ['input'] });
  b.output('input', 'float32', ['N', C, pre.height, pre.width]);
  return { irVersion: 8, opsetImports: [{ domain: '', version: 17 }], producerName: 'ttaq', producerVersion: '0', metadata: {}, graph: b.build() };
}

export class InputPipeline {
  private session: Session | null = null;
  constructor(private readonly pre: Preprocess, private readonly sessionOptions: SessionOptions = {}) {}

  /** The model input for `batch` (images of a Dataset slice, HWC uint8). */
  async run(batch: Pick<Dataset, 'count' | 'height' | 'width' | 'channels' | 'images'>): Promise<TensorOf<'float32'>> {
    const p = this.pre;
    if (batch.height !== p.height || batch.width !== p.width || batch.channels !== p.channels) {
      const t = preprocessBatch(batch, p);
      return makeTensor('float32', t.dims, t.data);
    }
    this.session ??= await createSession(normalizeModel(p), { ...this.sessionOptions, source: 'input normalisation' });
    const out = await this.session.run({ images: makeTensor('uint8', [batch.count, p.height, p.width, p.channels], batch.images) });
    return out['input'] as TensorOf<'float32'>;
  }

  async close(): Promise<void> {
    await this.session?.release();
  }
}
