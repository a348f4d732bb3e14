// Optimizer state <-> JSON-able objects (buffers as base64 of little-endian float32) and bytes.
import { TtaqError } from '../errors/index.ts';
import type { OptimizerState } from './optimizers.ts';

export interface OptimizerStateJson {
  readonly format: 'ttaq.optim.v1';
  readonly kind: 'sgd' | 'adam';
  readonly steps: number;
  readonly hyper: Record<string, number | boolean>;
  /** parameter -> slot -> base64 float32 (little-endian). */
  readonly slots: Record<string, Record<string, string>>;
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function toBase64(a: Float32Array): string {
  if (!littleEndian) throw new TtaqError('INTERNAL', 'optimizer state serialisation assumes a little-endian machine');
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
}

function fromBase64(s: string, where: string): Float32Array {
  const buf = Buffer.from(s, 'base64');
  if (buf.byteLength % 4 !== 0) throw new TtaqError('STATE_MISMATCH', `optimizer state buffer ${where} has ${buf.byteLength} bytes, not a multiple of 4; the state is corrupt`, { where });
  const out = new Float32Array(buf.byteLength / 4);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

export function stateToJson(s: OptimizerState): OptimizerStateJson {
  const slots: Record<string, Record<string, string>> = {};
  for (const [p, ss] of Object.entries(s.slots)) slots[p] = Object.fromEntries(Object.entries(ss).map(([k, b]) => [k, toBase64(b)]));
  return { format: 'ttaq.optim.v1', kind: s.kind, steps: s.steps, hyper: { ...s.hyper }, slots };
}

export function stateFromJson(j: unknown): OptimizerState {
  const o = j as Partial<OptimizerStateJson> | null;
  if (!o || typeof o !== 'object' || o.format !== 'ttaq.optim.v1' || (o.kind !== 'sgd' && o.kind !== 'adam') || typeof o.steps !== 'number' || typeof o.slots !== 'object' || typeof o.hyper !== 'object') {
    throw new TtaqError('STATE_MISMATCH', "optimizer state is not a 'ttaq.optim.v1' object (fields format, kind, steps, hyper, slots); pass what stateToJson wrote", {});
  }
  const slots: Record<string, Record<string, Float32Array>> = {};
  for (const [p, ss] of Object.entries(o.slots!)) {
    slots[p] = Object.fromEntries(Object.entries(ss).map(([k, b]) => [k, fromBase64(b, `${p}.${k}`)]));
  }
  return { kind: o.kind, steps: o.steps, hyper: { ...o.hyper! }, slots };
}

export const stateToBytes = (s: OptimizerState): Uint8Array => new TextEncoder().encode(JSON.stringify(stateToJson(s)));

export function stateFromBytes(bytes: Uint8Array): OptimizerState {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new TtaqError('STATE_MISMATCH', `optimizer state bytes are not JSON: ${(e as Error).message}`, {}, { cause: e });
  }
  return stateFromJson(parsed);
}
