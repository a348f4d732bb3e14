// The adapter's state as one versioned binary blob: what the device agent stores (SQLite) and
// restores after a restart. Layout (little-endian):
//
//   bytes 0-7   magic 'TTAQADPT'
//   u32         format version (STATE_VERSION)
//   u32         header length L
//   L bytes     header: UTF-8 JSON { modelSha256, optionsKey, counters, scalars, arrays: [{name, length}] }
//   pad to 4
//   float32...  the arrays' values, concatenated in header order
//   32 bytes    SHA-256 of everything before it (corruption check)
//
// The header names the model (SHA-256) and the options that shape the state; restore refuses a
// blob made for another model or another option set.
import { createHash } from 'node:crypto';
import { TtaqError } from '../errors/index.ts';

export const STATE_MAGIC = 'TTAQADPT';
export const STATE_VERSION = 1;

export interface StateContent {
  readonly modelSha256: string;
  /** A digest of the options the state depends on (parameter set, normalisation, loss). */
  readonly optionsKey: string;
  readonly counters: Readonly<Record<string, number>>;
  /** Other small numbers (EMAs, step counts of the optimiser). */
  readonly scalars: Readonly<Record<string, number>>;
  /** Named vectors (parameters, optimiser moments, statistics). */
  readonly arrays: ReadonlyMap<string, Float32Array | Float64Array>;
}

interface Header {
  modelSha256: string;
  optionsKey: string;
  counters: Record<string, number>;
  scalars: Record<string, number>;
  arrays: { name: string; length: number; dtype: 'float32' | 'float64' }[];
}

export function encodeState(s: StateContent): Uint8Array {
  const header: Header = {
    modelSha256: s.modelSha256,
    optionsKey: s.optionsKey,
    counters: { ...s.counters },
    scalars: { ...s.scalars },
    arrays: [...s.arrays].map(([name, a]) => ({ name, length: a.length, dtype: a instanceof Float64Array ? 'float64' : 'float32' })),
  };
  const hb = new TextEncoder().encode(JSON.stringify(header));
  let offset = 16 + hb.length;
  offset = (offset + 7) & ~7;
  const dataStart = offset;
  for (const [, a] of s.arrays) offset += a.byteLength;
  const total = offset + 32;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  out.set(new TextEncoder().encode(STATE_MAGIC), 0);
  dv.setUint32(8, STATE_VERSION, true);
  dv.setUint32(12, hb.length, true);
  out.set(hb, 16);
  let p = dataStart;
  for (const [, a] of s.arrays) {
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), p);
    p += a.byteLength;
  }
  out.set(createHash('sha256').update(out.subarray(0, p)).digest(), p);
  return out;
}

const bad = (what: string): TtaqError =>
  new TtaqError('ADAPT_BAD_STATE', `adaptation state blob ${what}; discard it and start from the source parameters (adapter.reset())`);

export function decodeState(blob: Uint8Array): StateContent {
  if (blob.length < 16 + 32) throw bad(`is ${blob.length} bytes, too short to be one`);
  const magic = new TextDecoder().decode(blob.subarray(0, 8));
  if (magic !== STATE_MAGIC) throw bad(`does not start with '${STATE_MAGIC}' (not an adapter state)`);
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== STATE_VERSION) throw bad(`has format version ${version}; this ttaq reads version ${STATE_VERSION}`);
  const body = blob.subarray(0, blob.length - 32);
  const digest = createHash('sha256').update(body).digest();
  if (!Buffer.from(blob.subarray(blob.length - 32)).equals(digest)) throw bad('fails its checksum (truncated or corrupted)');
  const hl = dv.getUint32(12, true);
  if (16 + hl > body.length) throw bad('has a header longer than the blob');
  let header: Header;
  try {
    header = JSON.parse(new TextDecoder().decode(blob.subarray(16, 16 + hl))) as Header;
  } catch {
    throw bad('has an unreadable header');
  }
  let p = (16 + hl + 7) & ~7;
  const arrays = new Map<string, Float32Array | Float64Array>();
  for (const a of header.arrays) {
    const size = a.dtype === 'float64' ? 8 : 4;
    const bytes = a.length * size;
    if (p + bytes > body.length) throw bad(`ends inside array '${a.name}'`);
    const copy = blob.slice(p, p + bytes);
    arrays.set(a.name, a.dtype === 'float64' ? new Float64Array(copy.buffer) : new Float32Array(copy.buffer));
    p += bytes;
  }
  return { modelSha256: header.modelSha256, optionsKey: header.optionsKey, counters: header.counters, scalars: header.scalars, arrays };
}
