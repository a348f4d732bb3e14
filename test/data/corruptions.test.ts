import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CORRUPTIONS, corruptImages, getCorruption } from '../../sdk/data/corruptions/index.ts';
import { psnr, type Dataset } from '../../sdk/data/dataset.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { graySet, rgbSet } from './helpers.ts';

const gray = graySet(6);
const rgb = rgbSet(6, 32);

function meanPsnr(d: Dataset, out: Uint8Array): number {
  const per = d.height * d.width * d.channels;
  let s = 0;
  for (let i = 0; i < d.count; i++) s += Math.min(60, psnr(d.images.subarray(i * per, (i + 1) * per), out.subarray(i * per, (i + 1) * per)));
  return s / d.count;
}

for (const [label, d] of [['gray 28x28', gray], ['RGB 32x32', rgb]] as const) {
  test(`every corruption keeps shape and dtype, and distortion grows with severity (${label})`, () => {
    for (const name of CORRUPTIONS) {
      const curve: number[] = [];
      for (let s = 1; s <= 5; s++) {
        const out = corruptImages(d, name, s, { seed: 7 });
        assert.ok(out instanceof Uint8Array, `${name}: output is not uint8`);
        assert.equal(out.length, d.images.length, `${name} ${s}: size changed`);
        curve.push(meanPsnr(d, out));
      }
      for (let s = 0; s < 4; s++) {
        assert.ok(curve[s]! > curve[s + 1]!, `${name} (${label}): PSNR at severity ${s + 1} (${curve[s]!.toFixed(2)} dB) not above severity ${s + 2} (${curve[s + 1]!.toFixed(2)} dB); curve ${curve.map((v) => v.toFixed(2)).join(' ')}`);
      }
      assert.ok(curve[0]! - curve[4]! > 1, `${name} (${label}): severity 5 only ${(curve[0]! - curve[4]!).toFixed(2)} dB worse than 1`);
      assert.ok(curve[4]! < 40, `${name} (${label}): severity 5 barely changes the image (${curve[4]!.toFixed(1)} dB)`);
    }
  });
}

test('same seed gives identical bytes, another seed differs (random corruptions)', () => {
  for (const d of [gray, rgb]) {
    for (const name of CORRUPTIONS) {
      const a = corruptImages(d, name, 3, { seed: 1 });
      const b = corruptImages(d, name, 3, { seed: 1 });
      assert.deepEqual(a, b, `${name}: same seed, different bytes`);
      const c = corruptImages(d, name, 3, { seed: 2 });
      if (getCorruption(name).random) assert.notDeepEqual(a, c, `${name}: seed has no effect`);
      else assert.deepEqual(a, c, `${name}: deterministic corruption depends on the seed`);
    }
  }
});

test('batching does not change the result (offset and indices)', () => {
  const per = rgb.height * rgb.width * 3;
  for (const name of ['gaussian_noise', 'frost', 'elastic_transform', 'motion_blur'] as const) {
    const whole = corruptImages(rgb, name, 4, { seed: 5 });
    const tail = corruptImages({ ...rgb, count: 2, images: rgb.images.subarray(4 * per) }, name, 4, { seed: 5, offset: 4 });
    assert.deepEqual(tail, whole.subarray(4 * per), `${name}: offset batch differs`);
    const picked = corruptImages({ ...rgb, count: 1, images: rgb.images.subarray(3 * per, 4 * per) }, name, 4, { seed: 5, indices: [3] });
    assert.deepEqual(picked, whole.subarray(3 * per, 4 * per), `${name}: indexed pick differs`);
  }
});

test('other image sizes work (non-square, large, tiny)', () => {
  for (const [h, w, c] of [[20, 36, 3], [64, 64, 1], [8, 8, 3]] as const) {
    const images = new Uint8Array(2 * h * w * c).map((_, i) => (i * 37) % 256);
    for (const name of CORRUPTIONS) {
      const out = corruptImages({ count: 2, height: h, width: w, channels: c, images }, name, 5, { seed: 3 });
      assert.equal(out.length, images.length, `${name} ${h}x${w}x${c}`);
    }
  }
});

test('bad names and severities fail with DATA_BAD_SPEC', () => {
  assert.throws(() => corruptImages(gray, 'rain', 1), (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_SPEC' && /known: gaussian_noise/.test(e.message));
  assert.throws(() => corruptImages(gray, 'fog', 6), (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_SPEC');
});
