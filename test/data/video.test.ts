import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { materializeStream, planStream, resolveStreamSpec } from '../../sdk/data/streams.ts';
import { readLabelledVideo, sidecarPathFor, writeLabelledVideo } from '../../sdk/data/video.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { graySet, rgbSet } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'ttaq-video-'));

test('a stream video read back has the same frame count, labels and domains', async () => {
  const src = graySet(10);
  const plan = planStream(resolveStreamSpec('temporal', { domains: ['clean', 'fog', 'contrast'], severity: 2, perDomain: 15 }), src.labels);
  const s = materializeStream(plan, src);
  const path = join(dir, 'stream.mp4');
  const w = await writeLabelledVideo(path, s, { fps: 30, size: 56, domainNames: s.domainNames, domain: s.domain, severity: s.severity });
  assert.equal(w.labels, sidecarPathFor(path));
  const { data, labels } = await readLabelledVideo(path);
  assert.equal(data.count, 45);
  assert.equal(labels.frames, 45);
  assert.deepEqual(Array.from(data.labels), Array.from(s.labels));
  assert.deepEqual(labels.domain, Array.from(s.domain));
  assert.deepEqual(labels.domainNames, ['clean', 'fog', 'contrast']);
  assert.equal(data.height, 28);
  assert.equal(data.channels, 1);
  // lossy codec: frames close to the stream images, not equal
  let diff = 0;
  for (let i = 0; i < s.images.length; i++) diff += Math.abs(data.images[i]! - s.images[i]!);
  const mad = diff / s.images.length;
  assert.ok(mad < 6, `mean absolute difference after H.264 round trip ${mad.toFixed(2)}`);
});

test('RGB frames keep their colours; a stale sidecar is DATA_BAD_FORMAT', async () => {
  const src = rgbSet(6, 32);
  const path = join(dir, 'rgb.mp4');
  await writeLabelledVideo(path, src, { size: 64 });
  const { data } = await readLabelledVideo(path);
  assert.equal(data.channels, 3);
  let diff = 0;
  for (let i = 0; i < src.images.length; i++) diff += Math.abs(data.images[i]! - src.images[i]!);
  assert.ok(diff / src.images.length < 12, `RGB mean absolute difference ${(diff / src.images.length).toFixed(2)} (channel order swapped?)`);
  const side = JSON.parse(readFileSync(sidecarPathFor(path), 'utf8'));
  side.frames = 7;
  side.labels.push(0);
  writeFileSync(sidecarPathFor(path), JSON.stringify(side));
  await assert.rejects(readLabelledVideo(path), (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_FORMAT' && /decoded 6 frames/.test(e.message));
});
