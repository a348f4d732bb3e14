import assert from 'node:assert/strict';
import { test } from 'node:test';
import { guardOpenCvTeardown } from '../../sdk/data/index.ts';
import { cv } from '../../sdk/data/cv.ts';

test('loading OpenCV arms one exit-time collection, however often it is asked', () => {
  const before = process.listenerCount('exit');
  cv();
  // Nothing imported above loads OpenCV eagerly, so this first cv() call arms the guard.
  assert.equal(process.listenerCount('exit') - before, 1, 'cv() must arm the exit-time collection');
  cv();
  assert.equal(process.listenerCount('exit') - before, 1, 'a second cv() must not arm it again');
  const afterLoad = process.listenerCount('exit');
  assert.equal(guardOpenCvTeardown(), true);
  assert.equal(guardOpenCvTeardown(), true);
  assert.equal(process.listenerCount('exit'), afterLoad, 'a second guard call must not add listeners');
});
