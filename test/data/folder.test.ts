import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { imageAt } from '../../sdk/data/dataset.ts';
import { decodeImage, readImageFolder, readUnlabelledImages, writeImageFolder } from '../../sdk/data/folder.ts';
import { preprocessBatch } from '../../sdk/data/preprocess.ts';
import type { Preprocess } from '../../sdk/manifest/index.ts';
import { loadOpenCv } from '../../device/cv.ts';
import { preprocessInto } from '../../device/preprocess.ts';
import { listImageNetC, readImageNetC } from '../../sdk/data/imagenetc.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { rgbSet } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'ttaq-folder-'));

test('image folder: PNG round trip, classes from folder names, gray conversion', async () => {
  const src = rgbSet(6, 16);
  await writeImageFolder(src, join(dir, 'set'));
  const back = await readImageFolder(join(dir, 'set'), { classes: src.classes });
  assert.equal(back.count, 6);
  assert.equal(back.channels, 3);
  // files are read class by class; match each read image to its source by label and bytes
  for (let i = 0; i < back.count; i++) {
    const found = Array.from({ length: src.count }, (_, j) => j).some((j) => src.labels[j] === back.labels[i] && Buffer.compare(Buffer.from(imageAt(src, j)), Buffer.from(imageAt(back, i))) === 0);
    assert.ok(found, `image ${i} (label ${back.labels[i]}) has no identical source`);
  }
  const grayBack = await readImageFolder(join(dir, 'set'), { channels: 1, height: 8, width: 8 });
  assert.equal(grayBack.channels, 1);
  assert.equal(grayBack.images.length, 6 * 64);
});

test('a folder of images without class sub-folders reads unlabelled, its own images only', async () => {
  const src = rgbSet(4, 8);
  await writeImageFolder({ ...src, classes: undefined, labels: src.labels.map(() => 0) as typeof src.labels }, join(dir, 'flat'));
  const frames = join(dir, 'flat', '0'); // the four PNGs, and a sub-folder that is not read
  mkdirSync(join(frames, 'old'), { recursive: true });
  writeFileSync(join(frames, 'notes.txt'), 'not an image');
  const d = await readUnlabelledImages(frames);
  assert.equal(d.count, 4);
  assert.equal(d.classes, undefined);
  assert.deepEqual(Array.from(d.labels), [0, 0, 0, 0]);
  await assert.rejects(readUnlabelledImages(join(frames, 'old')), (e: unknown) => isTtaqError(e) && e.code === 'DATA_NOT_FOUND');
});

test('JPEG and WebP decode; mixed sizes without a size option is DATA_BAD_FORMAT', async () => {
  const root = join(dir, 'mixed');
  mkdirSync(join(root, 'a'), { recursive: true });
  mkdirSync(join(root, 'b'), { recursive: true });
  const raw = { raw: { width: 10, height: 10, channels: 3 as const } };
  const px = Buffer.alloc(300, 128);
  writeFileSync(join(root, 'a', '1.jpg'), await sharp(px, raw).jpeg().toBuffer());
  writeFileSync(join(root, 'b', '1.webp'), await sharp(px, raw).webp().toBuffer());
  const ok = await readImageFolder(root);
  assert.deepEqual(Array.from(ok.labels), [0, 1]);
  assert.deepEqual(ok.classes, ['a', 'b']);
  assert.ok(Math.abs(ok.images[0]! - 128) < 4);
  writeFileSync(join(root, 'b', '2.png'), await sharp(Buffer.alloc(12 * 12 * 3, 0), { raw: { width: 12, height: 12, channels: 3 } }).png().toBuffer());
  await assert.rejects(readImageFolder(root), (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_FORMAT' && /must share a size.*resize them to one size first/.test(e.message));
  const resized = await readImageFolder(root, { height: 10, width: 10 });
  assert.equal(resized.count, 3);
  writeFileSync(join(root, 'b', '3.png'), Buffer.from('not a png'));
  await assert.rejects(readImageFolder(root, { height: 10, width: 10 }), (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_FORMAT' && /3\.png/.test(e.message));
});

test('with the model\'s layout (fit), images of several sizes are read as its preprocessing resizes them on the device, with one note', async () => {
  const root = join(dir, 'sizes');
  mkdirSync(root, { recursive: true });
  // RGB frames of four sizes, one already at the model's 8x8; smooth gradients with some noise
  const shapes = [[10, 10], [12, 16], [20, 14], [8, 8], [12, 16]] as const;
  let seed = 7;
  const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  for (const [k, [h, w]] of shapes.entries()) {
    const px = Buffer.from(Array.from({ length: h * w * 3 }, (_, i) => Math.round(((i % (w * 3)) * 5 + Math.floor(i / (w * 3)) * 9 + 60 * rnd()) % 256)));
    writeFileSync(join(root, `${k}.png`), await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer());
  }
  // the refusal stays for callers that give no layout (the images have no one size to be stored at)
  await assert.rejects(readUnlabelledImages(root), (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_FORMAT' && /must share a size/.test(e.message));
  for (const resize of ['letterbox', 'center-crop', 'stretch'] as const) {
    const spec: Preprocess = { height: 8, width: 8, channels: 1, resize, mean: [0.4], std: [0.2], layout: 'NCHW' };
    const notes: string[] = [];
    const d = await readUnlabelledImages(root, { fit: spec, onNote: (l) => notes.push(l) });
    assert.deepEqual([d.count, d.height, d.width, d.channels], [5, 8, 8, 1]);
    assert.deepEqual(notes, [`4 of 5 images resized from other sizes (2 of 12x16, 1 of 10x10, 1 of 20x14) to the model's 8x8 (${resize}, as its preprocessing resizes camera frames)`]);
    // the model input from the stored images is the model input from each original image, as the
    // offline preprocessing makes it and as the agent makes it from a camera frame (BGR)
    const stored = preprocessBatch(d, spec).data;
    const cv = loadOpenCv();
    for (let k = 0; k < shapes.length; k++) {
      const img = await decodeImage(join(root, `${k}.png`));
      assert.equal(img.channels, 3);
      const alone = preprocessBatch({ count: 1, height: img.height, width: img.width, channels: 3, images: img.data }, spec).data;
      const mine = stored.subarray(k * 64, (k + 1) * 64);
      assert.deepEqual(Array.from(mine), Array.from(alone), `${resize}: image ${k}`);
      const frame = new cv.Mat(Buffer.from(img.data), img.height, img.width, cv.CV_8UC3).cvtColor(cv.COLOR_RGB2BGR);
      const agent = preprocessInto(cv, frame, spec, new Float32Array(64));
      agent.forEach((v, i) => assert.ok(Math.abs(v - mine[i]!) < 1e-6, `${resize}: image ${k} pixel ${i}: ${mine[i]} stored, ${v} on the agent`));
    }
  }
  // labelled folders too; nothing resized, nothing said
  const notes: string[] = [];
  const same = await readImageFolder(join(dir, 'set'), { fit: { height: 16, width: 16, channels: 3, resize: 'stretch' }, onNote: (l) => notes.push(l) });
  assert.deepEqual([same.count, same.height, same.channels, notes.length], [6, 16, 3, 0]);
});

test('ImageNet-C layout: domains with one shared class list', async () => {
  const root = join(dir, 'inc');
  const src = rgbSet(4, 8);
  for (const [c, s] of [['fog', 1], ['fog', 3], ['snow', 5]] as const) await writeImageFolder(src, join(root, c, String(s)));
  assert.deepEqual(listImageNetC(root).map((d) => `${d.corruption}/${d.severity}`), ['fog/1', 'fog/3', 'snow/5']);
  const domains = await readImageNetC(root, { corruptions: ['snow', 'fog'], severities: [3, 5] });
  assert.deepEqual(domains.map((d) => `${d.corruption}/${d.severity}`), ['snow/5', 'fog/3']);
  assert.deepEqual(domains[0]!.data.classes, domains[1]!.data.classes);
  await assert.rejects(readImageNetC(root, { corruptions: ['rain'] }), (e: unknown) => isTtaqError(e) && e.code === 'DATA_NOT_FOUND');
});
