// Training checkpoints: one file holding a JSON header (epoch, step, RNG state, options, history,
// optimizer scalars) and float32 tensors (parameters, BN running statistics, optimizer buffers).
// Layout: 8-byte magic 'TTAQCKP1', uint32 LE header length, UTF-8 JSON header, zero padding to a
// multiple of 4, then each tensor's float32 data (LE) in header order. Written to a temporary
// file and renamed, so a crash never leaves a torn checkpoint.
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../files/index.ts';
import { TtaqError } from '../errors/index.ts';

const MAGIC = 'TTAQCKP1';

export interface CheckpointTensor {
  readonly dims: readonly number[];
  readonly data: Float32Array;
}

export interface Checkpoint {
  /** JSON-serialisable state. */
  readonly meta: Readonly<Record<string, unknown>>;
  readonly tensors: ReadonlyMap<string, CheckpointTensor>;
}

export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  const table = [...c.tensors].map(([name, t]) => ({ name, dims: [...t.dims], length: t.data.length }));
  const header = new TextEncoder().encode(JSON.stringify({ meta: c.meta, tensors: table }));
  const headPad = (4 - ((12 + header.length) % 4)) % 4;
  const dataBytes = table.reduce((s, t) => s + t.length * 4, 0);
  const out = new Uint8Array(12 + header.length + headPad + dataBytes);
  out.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(out.buffer).setUint32(8, header.length, true);
  out.set(header, 12);
  let off = 12 + header.length + headPad;
  for (const t of c.tensors.values()) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), off);
    off += t.data.byteLength;
  }
  return out;
}

export function decodeCheckpoint(bytes: Uint8Array, source = 'checkpoint'): Checkpoint {
  const bad = (why: string): never => {
    throw new TtaqError('STATE_MISMATCH', `${source} is not a usable ttaq checkpoint: ${why}; pass a file written by 'ttaq train' (the --out path with .ckpt)`);
  };
  if (bytes.length < 12 || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) bad('wrong magic bytes');
  const hlen = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  if (12 + hlen > bytes.length) bad('truncated header');
  let head: { meta: Record<string, unknown>; tensors: { name: string; dims: number[]; length: number }[] };
  try {
    head = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + hlen)));
  } catch (e) {
    return bad(`header is not JSON (${(e as Error).message})`);
  }
  let off = 12 + hlen + ((4 - ((12 + hlen) % 4)) % 4);
  const tensors = new Map<string, CheckpointTensor>();
  for (const t of head.tensors) {
    const n = t.length * 4;
    if (off + n > bytes.length) bad(`truncated at tensor '${t.name}'`);
    // Copy into an aligned buffer owned by the tensor.
    const data = new Float32Array(t.length);
    new Uint8Array(data.buffer).set(bytes.subarray(off, off + n));
    tensors.set(t.name, { dims: t.dims, data });
    off += n;
  }
  return { meta: head.meta, tensors };
}

export async function saveCheckpoint(path: string, c: Checkpoint): Promise<void> {
  await writeFileAtomic(path, encodeCheckpoint(c));
}

export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new TtaqError('STATE_MISMATCH', `cannot read checkpoint ${path}: ${(e as Error).message}; check the --resume path`, {}, { cause: e });
  }
  return decodeCheckpoint(bytes, path);
}
