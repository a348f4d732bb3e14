// One worker of DataParallelStep: holds an onnxruntime session of the gradient graph and answers
// 'run' messages with the requested outputs. Started by sdk/autodiff/parallel.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { TtaqError } from '../errors/index.ts';
import type { Tensor } from '../onnx/types.ts';
import { createSession, type Session, type SessionOptions } from '../runtime/index.ts';
import { feedable, type FromStepWorker, type ToStepWorker, type WireTensor } from './parallel.ts';

const port = parentPort!;
const data = workerData as { model: Uint8Array; fetch: string[]; session: SessionOptions };
const post = (m: FromStepWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
const codeOf = (e: unknown): string => (e instanceof TtaqError ? e.code : 'INTERNAL');
const text = (e: unknown): string => (e instanceof Error ? e.message : String(e));

let session: Session;
try {
  session = await createSession(data.model, { ...data.session, source: 'gradient worker', logger: () => {} });
} catch (e) {
  post({ type: 'error', id: -1, code: codeOf(e), message: text(e) });
  process.exit(1);
}

port.on('message', (m: ToStepWorker) => {
  if (m.type === 'release') {
    void session.release().finally(() => port.close());
    return;
  }
  const feeds: Record<string, Tensor> = {};
  // shared-memory views become local copies here, in parallel with the other slices
  for (const t of m.feeds) feeds[t.name] = feedable(t);
  session.run(feeds, data.fetch).then((out) => {
    const tensors: WireTensor[] = [];
    const transfer: ArrayBuffer[] = [];
    for (const name of data.fetch) {
      const t = out[name]!;
      // copy into a buffer of our own that can be transferred (onnxruntime's may not be)
      const copy = t.data.slice();
      transfer.push(copy.buffer as ArrayBuffer);
      tensors.push({ name, dtype: t.dtype, dims: t.dims, data: copy });
    }
    post({ type: 'result', id: m.id, tensors }, transfer);
  }, (e: unknown) => post({ type: 'error', id: m.id, code: codeOf(e), message: text(e) }));
});
post({ type: 'ready' });
