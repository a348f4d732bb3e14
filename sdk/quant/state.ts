// Resume state of a reconstruction run: after each finished block, its integer codes and learned
// activation steps are written to a JSON file. A rerun with the same model and options reloads
// them, rebuilds the caches by running the finished blocks forward, and continues with the next
// block. An unfinished state from other inputs is refused (STATE_MISMATCH), never silently mixed
// in; a finished one from other inputs is replaced.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../files/index.ts';
import { TtaqError } from '../errors/index.ts';
import type { BlockReport } from './recon.ts';

export interface BlockState {
  readonly block: string;
  readonly report: BlockReport;
  /** node -> base64 of the Int16 codes */
  readonly codes: Readonly<Record<string, string>>;
  /** activation value -> learned step */
  readonly steps: Readonly<Record<string, number>>;
}

export interface ReconState {
  readonly format: 'ttaq-quant-state/1';
  readonly key: string;
  readonly blocks: BlockState[];
  /** Blocks in the run's plan: a state with all of them is a finished run's (absent in older files). */
  readonly total?: number;
}

export const stateKey = (modelSha: string, options: unknown): string =>
  createHash('sha256').update(modelSha).update(JSON.stringify(options)).digest('hex');

export const encodeCodes = (c: Int32Array): string => Buffer.from(Int16Array.from(c).buffer).toString('base64');

export function decodeCodes(s: string, n: number, where: string): Int32Array {
  const buf = Buffer.from(s, 'base64');
  if (buf.length !== n * 2) throw new TtaqError('STATE_MISMATCH', `${where}: ${buf.length / 2} stored codes, the layer has ${n}; delete the state file to start over`);
  const i16 = new Int16Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
  return Int32Array.from(i16);
}

/** Loads a state file; undefined when it does not exist. */
export async function loadState(path: string, key: string): Promise<ReconState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TtaqError('STATE_MISMATCH', `cannot read quantization state ${path}: ${(e as Error).message}`);
  }
  let s: ReconState;
  try {
    s = JSON.parse(text) as ReconState;
  } catch {
    throw new TtaqError('STATE_MISMATCH', `quantization state ${path} is not valid JSON (an interrupted write?); delete it to start over`);
  }
  if (s.format !== 'ttaq-quant-state/1' || !Array.isArray(s.blocks)) {
    throw new TtaqError('STATE_MISMATCH', `${path} is not a ttaq quantization state file; pass another --state path`);
  }
  if (s.key !== key) {
    // A finished run's state has done its job (its model files are written); the run asking now
    // writes over those files and over this state. An unfinished one holds work that only the
    // command that started it can use, so it is kept.
    if (s.total !== undefined && s.blocks.length >= s.total) return undefined;
    throw new TtaqError('STATE_MISMATCH', `quantization state ${path} belongs to an unfinished run of another model, other options or other calibration images (${s.blocks.length}${s.total !== undefined ? ` of ${s.total}` : ''} blocks done); rerun that command to finish it, delete the file to start over, or pass another --state path`);
  }
  return s;
}

/** Writes the state atomically (temp file + rename), so an interruption never leaves half a file. */
export async function saveState(path: string, s: ReconState): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(s));
}
