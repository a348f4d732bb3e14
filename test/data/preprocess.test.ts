import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePreprocess, preprocessBatch } from '../../sdk/data/preprocess.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';

const close = (a: number, b: number, tol = 1e-5): boolean => Math.abs(a - b) <= tol;

test('same-size RGB batch: per-channel normalisation into NCHW planes', () => {
  const spec = parsePreprocess({ height: 2, width: 3, channels: 3, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.5] });
  const images = new Uint8Array(2 * 2 * 3 * 3).map((_, i) => (i * 11) % 256);
  const { data, dims } = preprocessBatch({ count: 2, height: 2, width: 3, channels: 3, images }, spec);
  assert.deepEqual(dims, [2, 3, 2, 3]);
  for (let n = 0; n < 2; n++) for (let c = 0; c < 3; c++) for (let p = 0; p < 6; p++) {
    const want = (images[(n * 6 + p) * 3 + c]! / 255 - spec.mean[c]!) / spec.std[c]!;
    assert.ok(close(data[(n * 3 + c) * 6 + p]!, want), `n${n} c${c} p${p}: ${data[(n * 3 + c) * 6 + p]} vs ${want}`);
  }
});

test('gray to RGB replicates; stretch, centre crop and letterbox geometry', () => {
  // 4x8 gray image: left half 0, right half 255
  const img = new Uint8Array(32).map((_, i) => (i % 8 < 4 ? 0 : 255));
  const batch = { count: 1, height: 4, width: 8, channels: 1, images: img };
  const base = { channels: 3 as const, mean: [0], std: [1] };
  const st = preprocessBatch(batch, parsePreprocess({ ...base, height: 4, width: 4, resize: 'stretch' }));
  assert.deepEqual(st.dims, [1, 3, 4, 4]);
  assert.ok(close(st.data[0]!, 0) && close(st.data[3]!, 1) && close(st.data[16 + 3]!, 1) && close(st.data[32 + 3]!, 1));
  // centre crop 4x4 of the 4x8 image: columns 2..5, so 0 0 1 1
  const cc = preprocessBatch(batch, parsePreprocess({ ...base, height: 4, width: 4, resize: 'center-crop' }));
  assert.deepEqual(Array.from(cc.data.subarray(0, 4)).map((v) => Math.round(v)), [0, 0, 1, 1]);
  // letterbox 8x8: rows 0-1 and 6-7 are padding (black), rows 2-5 the image
  const lb = preprocessBatch(batch, parsePreprocess({ channels: 1, mean: [0.5], std: [0.5], height: 8, width: 8, resize: 'letterbox' }));
  assert.ok(close(lb.data[0]!, -1) && close(lb.data[7 * 8 + 7]!, -1), 'padding is black');
  assert.ok(close(lb.data[3 * 8 + 7]!, 1) && close(lb.data[3 * 8]!, -1), 'image rows kept');
});

test('bad specs and buffers fail clearly', () => {
  assert.throws(() => parsePreprocess({ height: 2, width: 2, channels: 3, mean: [0, 0], std: [1] }), (e: unknown) => isTtaqError(e) && e.code === 'CONFIG_INVALID' && /'mean'/.test(e.message));
  assert.throws(() => parsePreprocess({ height: 2, width: 2, channels: 2, mean: [0], std: [1] }), (e: unknown) => isTtaqError(e) && /'channels'/.test(e.message));
  const spec = parsePreprocess({ height: 2, width: 2, channels: 1, mean: [0], std: [1] });
  assert.throws(() => preprocessBatch({ count: 2, height: 2, width: 2, channels: 1, images: new Uint8Array(7) }, spec), (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_FORMAT');
});
