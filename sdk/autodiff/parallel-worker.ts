// One worker of DataParallelStep: holds an onnxruntime session of the gradient graph and answers
// 'run' jobs with the requested outputs. Started by sdk/autodiff/parallel.ts; jobs and answers go
// over the MessagePort in workerData, read synchronously after a wake-up through the shared
// counters (see StepWorker there), so no step waits for an event loop to wake.
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { TtaqError } from '../errors/index.ts';
import type { Tensor } from '../onnx/types.ts';
import { createSession, type Session, type SessionOptions } from '../runtime/index.ts';
import { FeedBuffers, type BatchFeed } from './feeds.ts';
import { CTRL_JOBS, CTRL_RESULTS, type FromStepWorker, type ToStepWorker, type WireFeed, type WireTensor } from './parallel.ts';

const data = workerData as { model: Uint8Array; fetch: string[]; session: SessionOptions; port: MessagePort; ctrl: SharedArrayBuffer };
const ctrl = new Int32Array(data.ctrl);
const codeOf = (e: unknown): string => (e instanceof TtaqError ? e.code : 'INTERNAL');
const text = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const answer = (m: FromStepWorker, transfer: ArrayBuffer[] = []): void => {
  data.port.postMessage(m, transfer);
  Atomics.add(ctrl, CTRL_RESULTS, 1);
  Atomics.notify(ctrl, CTRL_RESULTS);
};

// the session and what a job fetches change when the worker, back from the idle pool, gets a new graph
let session: Session | undefined;
let fetch: readonly string[] = data.fetch;
const open = (model: Uint8Array, options: SessionOptions) => createSession(model, { ...options, source: 'gradient worker', logger: () => {} });
try {
  session = await open(data.model, data.session);
} catch (e) {
  parentPort!.postMessage({ type: 'error', id: -1, code: codeOf(e), message: text(e) } satisfies FromStepWorker);
  process.exit(1);
}
parentPort!.postMessage({ type: 'ready' } satisfies FromStepWorker);

let buffers = new FeedBuffers();
async function run(id: number, wire: readonly WireFeed[]): Promise<void> {
  try {
    const feeds: Record<string, Tensor> = {};
    for (const f of wire) {
      const { name, ...feed } = f;
      feeds[name] = buffers.feed(name, feed as BatchFeed);
    }
    if (!session) throw new TtaqError('INTERNAL', 'gradient worker: a job came while no graph was loaded');
    const out = await session.run(feeds, fetch);
    const tensors: WireTensor[] = [];
    const transfer: ArrayBuffer[] = [];
    for (const name of fetch) {
      const t = out[name]!;
      // copy into a buffer of our own that can be transferred (onnxruntime's may not be)
      const copy = t.data.slice();
      transfer.push(copy.buffer as ArrayBuffer);
      tensors.push({ name, dtype: t.dtype, dims: t.dims, data: copy });
    }
    answer({ type: 'result', id, tensors }, transfer);
  } catch (e) {
    answer({ type: 'error', id, code: codeOf(e), message: text(e) });
  }
}

// Blocks in futex waits between jobs; the periodic time-out only lets a terminate() take effect.
let seen = 0;
for (;;) {
  const m = receiveMessageOnPort(data.port)?.message as ToStepWorker | undefined;
  if (!m) {
    Atomics.wait(ctrl, CTRL_JOBS, seen, 1000);
    seen = Atomics.load(ctrl, CTRL_JOBS);
    continue;
  }
  if (m.type === 'release') {
    await session?.release();
    data.port.close();
    break;
  }
  if (m.type === 'unload') {
    await session?.release();
    session = undefined;
    continue;
  }
  if (m.type === 'load') {
    try {
      await session?.release();
      session = undefined;
      session = await open(m.model, m.session);
      fetch = m.fetch;
      buffers = new FeedBuffers();
      answer({ type: 'loaded', id: m.id });
    } catch (e) {
      answer({ type: 'error', id: m.id, code: codeOf(e), message: text(e) });
    }
    continue;
  }
  await run(m.id, m.feeds);
}
