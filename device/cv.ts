// Loads the OpenCV binding (@u4/opencv4nodejs) quietly: its loader logs build-environment lines
// on require, which would corrupt the agent's JSON log on stdout. One place, typed.
import { createRequire } from 'node:module';
import { TtaqError } from '../sdk/errors/index.ts';
import { guardOpenCvTeardown } from '../sdk/data/index.ts';

export type CV = typeof import('@u4/opencv4nodejs').cv;
export type Mat = import('@u4/opencv4nodejs').Mat;

let loaded: CV | undefined;

export function loadOpenCv(): CV {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  try {
    // A dependency of the binding: silence its logger before the binding requires it.
    (require('@u4/opencv-build') as { Log: { silence: boolean } }).Log.silence = true;
  } catch {
    // Not resolvable on its own in some layouts: the binding still loads, only louder.
  }
  try {
    loaded = require('@u4/opencv4nodejs') as CV;
    guardOpenCvTeardown();
  } catch (e) {
    throw new TtaqError('SOURCE_FAILED', `cannot load the OpenCV binding (@u4/opencv4nodejs): ${(e as Error).message.split('\n')[0]}; run 'npm run bootstrap' (needs libopencv-dev) to build it`, {}, { cause: e });
  }
  return loaded;
}
