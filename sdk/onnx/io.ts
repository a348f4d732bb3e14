// Model files: async reads and writes with errors that carry the file name.
import { readFile, writeFile } from 'node:fs/promises';
import { TtaqError, unwrap } from '../errors/index.ts';
import { decodeModel, encodeModel } from './codec.ts';
import type { Model } from './types.ts';

/** Reads the raw bytes of a model file (ONNX_READ_FAILED naming the file on failure). */
export async function readModelBytes(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new TtaqError('ONNX_READ_FAILED', `cannot read model '${path}': ${why}; check the path`, { path, errno: code }, { cause: e });
  }
}

/** Reads and decodes a model file; throws TtaqError (ONNX_*) naming the file. */
export async function loadModel(path: string): Promise<Model> {
  return unwrap(decodeModel(await readModelBytes(path), `'${path}'`));
}

/** Encodes and writes a model file. */
export async function saveModel(path: string, model: Model): Promise<void> {
  const bytes = encodeModel(model);
  try {
    await writeFile(path, bytes);
  } catch (e) {
    throw new TtaqError('ONNX_WRITE_FAILED', `cannot write model '${path}': ${(e as Error).message}; check that the folder exists and is writable`, { path }, { cause: e });
  }
}
