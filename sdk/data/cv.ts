// The one place sdk/data loads OpenCV (@u4/opencv4nodejs). The package's entry point logs its
// build configuration to stdout on load, which would corrupt `--json` output, so we load the
// compiled binding directly (same native module, none of the JS extras) and fall back to the
// package entry when the binding is not where we expect it. Loaded lazily: readers that do not
// need OpenCV do not pay for it.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { TtaqError } from '../errors/index.ts';
import { guardOpenCvTeardown } from './cv-teardown.ts';

export type OpenCV = typeof import('@u4/opencv4nodejs').cv;
export type Mat = import('@u4/opencv4nodejs').Mat;

let cached: OpenCV | null = null;

export function cv(): OpenCV {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  try {
    const entry = require.resolve('@u4/opencv4nodejs');
    // entry: <pkg>/cjs/lib/opencv4nodejs.js -> binding: <pkg>/build/Release/opencv4nodejs.node
    const pkg = join(dirname(entry), '..', '..');
    const binding = join(pkg, 'build', 'Release', 'opencv4nodejs.node');
    cached = (existsSync(binding) ? require(binding) : require('@u4/opencv4nodejs').cv) as OpenCV;
    guardOpenCvTeardown();
  } catch (e) {
    throw new TtaqError('INTERNAL', `OpenCV (@u4/opencv4nodejs) failed to load: ${(e as Error).message}; install libopencv-dev and rebuild the binding (npm rebuild @u4/opencv4nodejs)`, {}, { cause: e });
  }
  return cached;
}

/** Wraps HWC uint8 bytes (one image) in a Mat of CV_8UC{channels} (copies). */
export function matFromU8(bytes: Uint8Array, height: number, width: number, channels: number): Mat {
  const c = cv();
  const type = channels === 1 ? c.CV_8UC1 : channels === 3 ? c.CV_8UC3 : c.CV_8UC4;
  return new c.Mat(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), height, width, type);
}

/** Wraps HWC float32 data (one image) in a Mat of CV_32FC{channels} (copies). */
export function matFromF32(data: Float32Array, height: number, width: number, channels: number): Mat {
  const c = cv();
  const type = channels === 1 ? c.CV_32FC1 : channels === 3 ? c.CV_32FC3 : c.CV_32FC4;
  return new c.Mat(Buffer.from(data.buffer, data.byteOffset, data.byteLength), height, width, type);
}

/** A Mat's bytes as float32 values (the Mat must be CV_32F*). */
export function f32Of(m: Mat): Float32Array {
  const b = m.getData();
  // getData returns a fresh Buffer; its offset may not be 4-aligned inside the pool.
  if (b.byteOffset % 4 === 0) return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  return new Float32Array(new Uint8Array(b).buffer);
}

/** A Mat's bytes as uint8 (the Mat must be CV_8U*). */
export function u8Of(m: Mat): Uint8Array {
  const b = m.getData();
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** A float32 kernel Mat from row-major values. */
export function kernelMat(values: Float32Array, rows: number, cols: number): Mat {
  return matFromF32(values, rows, cols, 1);
}

/**
 * An OpenCV frame (BGR or grayscale, CV_8U) as HWC uint8 in this module's layout (RGB order, or one
 * channel), converting colour as needed: what the device agent feeds `preprocessBatch`.
 */
export function frameToImage(frame: Mat, channels: 1 | 3): { data: Uint8Array; height: number; width: number } {
  const c = cv();
  let m = frame;
  const cn = frame.channels;
  if (channels === 1) {
    if (cn === 3) m = frame.cvtColor(c.COLOR_BGR2GRAY);
    else if (cn === 4) m = frame.cvtColor(c.COLOR_BGRA2GRAY);
  } else {
    if (cn === 1) m = frame.cvtColor(c.COLOR_GRAY2RGB);
    else if (cn === 3) m = frame.cvtColor(c.COLOR_BGR2RGB);
    else if (cn === 4) m = frame.cvtColor(c.COLOR_BGRA2RGB);
  }
  return { data: new Uint8Array(u8Of(m)), height: m.rows, width: m.cols };
}

/** HWC uint8 image in RGB (or gray) to a BGR CV_8UC3 Mat (for video writing and imwrite). */
export function imageToBgrMat(bytes: Uint8Array, height: number, width: number, channels: number): Mat {
  const c = cv();
  const m = matFromU8(bytes, height, width, channels);
  return channels === 1 ? m.cvtColor(c.COLOR_GRAY2BGR) : m.cvtColor(c.COLOR_RGB2BGR);
}
