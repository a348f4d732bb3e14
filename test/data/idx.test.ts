import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { encodeIdx, findIdxPair, idxToDataset, listIdxNames, parseIdx, readIdx, readIdxDir, writeIdx, writeIdxDataset } from '../../sdk/data/idx.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { graySet, rgbSet } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'ttaq-idx-'));
const badFormat = (e: unknown): boolean => isTtaqError(e) && e.code === 'DATA_BAD_FORMAT';

test('IDX round trip, raw and gzip, uint8 and int32', async () => {
  const data = new Uint8Array(3 * 4 * 5).map((_, i) => (i * 13) % 256);
  for (const name of ['a-images-idx3-ubyte', 'a-images-idx3-ubyte.gz']) {
    await writeIdx(join(dir, name), data, [3, 4, 5]);
    const back = await readIdx(join(dir, name));
    assert.deepEqual(back.dims, [3, 4, 5]);
    assert.deepEqual(back.data, data);
  }
  assert.equal(readFileSync(join(dir, 'a-images-idx3-ubyte.gz'))[0], 0x1f, 'the .gz file is gzip');
  const big = Int32Array.from([0, 70000, -5, 300]);
  await writeIdx(join(dir, 'big-labels-idx1-ubyte'), big, [4]);
  assert.deepEqual((await readIdx(join(dir, 'big-labels-idx1-ubyte'))).data, big);
});

test('datasets round trip through an IDX folder (gray idx3, RGB idx4, shared labels)', async () => {
  const g = graySet(5);
  const out = join(dir, 'sets');
  await writeIdxDataset(out, 'fog-5', g, { sharedLabels: true });
  const c = rgbSet(3, 16);
  await writeIdxDataset(out, 'colour', c);
  assert.deepEqual(listIdxNames(out), ['colour', 'fog-5']);
  const g2 = await readIdxDir(out, 'fog-5');
  assert.equal(g2.count, 5);
  assert.equal(g2.channels, 1);
  assert.deepEqual(g2.images, g.images);
  assert.deepEqual(Array.from(g2.labels), Array.from(g.labels));
  assert.match(findIdxPair(out, 'fog-5').labels, /\/labels-idx1-ubyte\.gz$/);
  const c2 = await readIdxDir(out, 'colour');
  assert.equal(c2.channels, 3);
  assert.deepEqual(c2.images, c.images);
});

test('truncated, garbage and mismatched files give DATA_BAD_FORMAT', async () => {
  const good = encodeIdx(new Uint8Array(2 * 3 * 3).fill(9), [2, 3, 3]);
  assert.throws(() => parseIdx(good.subarray(0, good.length - 1), 'cut'), (e: unknown) => badFormat(e) && /truncated/.test((e as Error).message));
  assert.throws(() => parseIdx(good.subarray(0, 6), 'header'), badFormat);
  assert.throws(() => parseIdx(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), 'garbage'), badFormat);
  assert.throws(() => parseIdx(new Uint8Array([0, 0, 0x42, 1, 0, 0, 0, 0]), 'dtype'), badFormat);
  const gz = gzipSync(good);
  writeFileSync(join(dir, 'cut.gz'), gz.subarray(0, gz.length - 10));
  await assert.rejects(readIdx(join(dir, 'cut.gz')), badFormat);
  writeFileSync(join(dir, 'junk'), Buffer.from('this is not an idx file at all'));
  await assert.rejects(readIdx(join(dir, 'junk')), badFormat);
  await writeIdx(join(dir, 'x-images-idx3-ubyte'), new Uint8Array(2 * 4), [2, 2, 2]);
  await writeIdx(join(dir, 'x-labels-idx1-ubyte'), new Uint8Array(3), [3]);
  await assert.rejects(readIdxDir(dir, 'x'), (e: unknown) => badFormat(e) && /do not belong together/.test((e as Error).message));
  await assert.rejects(readIdxDir(dir, 'nothing'), (e: unknown) => isTtaqError(e) && e.code === 'DATA_NOT_FOUND');
});

test('channel-first images (N, C, H, W) are refused with the IDX layout N, H, W[, C] and the transpose', () => {
  const labels = { dims: [2], data: new Uint8Array(2) };
  const chw = { dims: [2, 3, 6, 5], data: new Uint8Array(2 * 3 * 6 * 5) };
  assert.throws(() => idxToDataset(chw, labels, 'x'), (e: unknown) => badFormat(e) && /dims \[2, 3, 6, 5\].*5 channels.*look channel-first \(N, C, H, W\): IDX images are N, H, W\[, C\], so transpose to \[2, 6, 5, 3\]/.test((e as Error).message));
  const four = { dims: [2, 6, 5, 4], data: new Uint8Array(2 * 6 * 5 * 4) };
  assert.throws(() => idxToDataset(four, labels, 'x'), (e: unknown) => badFormat(e) && /4 channels, but only 1 or 3/.test((e as Error).message) && !/channel-first/.test((e as Error).message));
  assert.equal(idxToDataset({ dims: [2, 6, 5, 3], data: new Uint8Array(180) }, labels, 'x').channels, 3);
});

test('a split that Fashion-MNIST does not have, and a negative take, are refused rather than read as something else', async () => {
  const { readFashionMnist } = await import('../../sdk/data/idx.ts');
  const { take } = await import('../../sdk/data/dataset.ts');
  await assert.rejects(readFashionMnist('validation' as never), (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_SPEC' && /'train' .*'test' .*not 'validation'/.test(e.message));
  assert.throws(() => take(graySet(4), -5), (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_SPEC' && /integer >= 0, got -5/.test(e.message));
  assert.equal(take(graySet(4), 2).count, 2);
});
