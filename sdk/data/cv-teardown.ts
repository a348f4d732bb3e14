// A crash at process exit, and its guard. @u4/opencv4nodejs installs a Mat allocator that reports
// OpenCV's native memory to V8 (Isolate::AdjustAmountOfExternalAllocatedMemory on the current
// isolate) whenever a Mat's data is freed on the main thread. When Node tears the isolate down at
// a natural exit it may finish a garbage collection that was under way; Mats that died before the
// exit are then destroyed with no current isolate, and the allocator's report dereferences null:
// SIGSEGV after all work is done (core dump: cv::Mat::~Mat -> AdjustAmountOfExternalAllocatedMemory
// under node::IsolateData::~IsolateData). It hit a few runs in a hundred of an OpenCV test file run in parallel loops.
//
// The guard collects garbage once more in the 'exit' event, while the isolate is still whole, so no
// dead Mat is left for the teardown, and no collection is under way when it starts. We keep the
// allocator itself: its reports are what makes V8 collect frame-sized Mats promptly in the agent.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let armed = false;

/** A full collection, or null when this runtime refuses to expose one. */
function fullCollector(): (() => void) | null {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return existing;
  try {
    // --expose-gc applies to contexts created after it is set: take `gc` from a fresh one.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : null;
  } catch {
    return null;
  }
}

/**
 * Arms the exit-time collection once per process; call it where the OpenCV binding is loaded.
 * Returns whether the guard is active (false only where the runtime hides its collector).
 */
export function guardOpenCvTeardown(): boolean {
  if (armed) return true;
  const gc = fullCollector();
  if (!gc) return false;
  armed = true;
  process.once('exit', () => gc());
  return true;
}
