import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { corruptImages } from '../../sdk/data/corruptions/index.ts';
import { readIdxDir, writeIdxDataset } from '../../sdk/data/idx.ts';
import { readLabelledVideo } from '../../sdk/data/video.ts';
import { graySet } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'ttaq-corrupt-cli-'));
const ttaq = (args: string[]) => spawnSync(process.execPath, ['bin/ttaq.js', 'corrupt', ...args], { encoding: 'utf8', env: { ...process.env, TTAQ_JSON_ERRORS: '1' } });

test('ttaq corrupt writes one IDX dataset per corruption and severity, readable by the eval convention', async () => {
  const src = graySet(20);
  await writeIdxDataset(join(dir, 'src'), 'test', src);
  const out = join(dir, 'out');
  const r = ttaq(['--data', join(dir, 'src'), '--corruptions', 'fog,pixelate', '--severities', '2,5', '--out', out, '--limit', '12', '--seed', '3', '--json', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  assert.equal(summary.out.files, 5);
  assert.equal(summary.images, 12);
  for (const name of ['fog-2', 'fog-5', 'pixelate-2', 'pixelate-5']) assert.ok(existsSync(join(out, `${name}-images-idx3-ubyte.gz`)), name);
  const fog5 = await readIdxDir(out, 'fog-5');
  assert.equal(fog5.count, 12);
  const want = corruptImages({ ...src, count: 12, images: src.images.subarray(0, 12 * 784) }, 'fog', 5, { seed: 3 });
  assert.deepEqual(fog5.images, want);
  assert.deepEqual(Array.from(fog5.labels), Array.from(src.labels.subarray(0, 12)));
});

test('ttaq corrupt --video encodes a stream with its sidecar; bad flags exit 2', async () => {
  await writeIdxDataset(join(dir, 'src2'), 'test', graySet(10));
  const video = join(dir, 'v', 'continual.mp4');
  const r = ttaq(['--data', join(dir, 'src2'), '--video', video, '--stream', 'continual', '--per-domain', '3', '--size', '56', '--json', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  const { data, labels } = await readLabelledVideo(video);
  assert.equal(data.count, 45);
  assert.equal(labels.domainNames.length, 15);
  const bad = ttaq(['--data', join(dir, 'src2'), '--out', join(dir, 'x'), '--severities', '0-9']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /CLI_USAGE/);
});
