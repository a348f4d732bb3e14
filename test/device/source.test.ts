import assert from 'node:assert/strict';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SourceSchema } from '../../device/config.ts';
import { loadOpenCv } from '../../device/cv.ts';
import { preprocessInto } from '../../device/preprocess.ts';
import { OpenCvSource, resumePoint } from '../../device/source.ts';
import type { Frame, SourceEvent } from '../../device/ports.ts';
import { makeVideo, SPEC, tmp, until } from './helpers.ts';

test('preprocessing: colour, resize modes and per-channel normalisation', () => {
  const cv = loadOpenCv();
  // BGR (10, 20, 30) everywhere, 6 rows x 12 cols
  const m = new cv.Mat(6, 12, cv.CV_8UC3, [10, 20, 30]);
  const rgb = { height: 4, width: 4, channels: 3 as const, resize: 'stretch' as const, mean: [0.1, 0.2, 0.3], std: [0.5, 0.25, 0.125] };
  const out = preprocessInto(cv, m, rgb, new Float32Array(48));
  // CHW, R first: (30/255 - 0.1)/0.5, (20/255 - 0.2)/0.25, (10/255 - 0.3)/0.125
  const want = [(30 / 255 - 0.1) / 0.5, (20 / 255 - 0.2) / 0.25, (10 / 255 - 0.3) / 0.125];
  for (let c = 0; c < 3; c++) for (let i = 0; i < 16; i++) assert.ok(Math.abs(out[c * 16 + i]! - want[c]!) < 1e-5, `channel ${c}`);
  // letterbox of a 2:1 frame into 4x4: rows 0 and 3 are padding (black), rows 1-2 the picture
  const half = new cv.Mat(6, 12, cv.CV_8UC1, 200);
  const lb = preprocessInto(cv, half, { ...SPEC, height: 4, width: 4, resize: 'letterbox', mean: [0], std: [1] }, new Float32Array(16));
  assert.deepEqual(Array.from(lb.subarray(0, 4)), [0, 0, 0, 0]);
  for (const v of lb.subarray(4, 12)) assert.ok(Math.abs(v - 200 / 255) < 1e-5);
  // center-crop keeps the middle: left half 0, right half 255 -> the crop straddles both
  const split = new cv.Mat(4, 8, cv.CV_8UC1, 0);
  split.getRegion(new cv.Rect(4, 0, 4, 4)).setTo(255);
  const cc = preprocessInto(cv, split, { ...SPEC, height: 4, width: 4, resize: 'center-crop', mean: [0], std: [1] }, new Float32Array(16));
  assert.ok(cc[0]! < 0.05 && cc[3]! > 0.95, `crop spans the middle: ${Array.from(cc.subarray(0, 4))}`);
});

/** Every frame until the end; the first may take long (capture process start on a busy machine). */
async function drain(src: OpenCvSource, max = 1000): Promise<Frame[]> {
  const frames: Frame[] = [];
  for (;;) {
    const f = await src.next(frames.length ? 10_000 : 60_000);
    if (f === 'end') return frames;
    assert.notEqual(f, 'timeout', 'frames keep coming');
    frames.push(f as Frame);
    if (frames.length >= max) return frames;
  }
}

test('a video file gives every frame, preprocessed, with stride', async () => {
  const dir = tmp();
  const video = join(dir, 'clip.avi');
  makeVideo(video, 20);
  const src = new OpenCvSource({ source: SourceSchema.parse({ uri: video }), preprocess: SPEC, batch: 4 });
  assert.equal(src.mode, 'all');
  await src.start();
  const frames = await drain(src);
  await src.stop();
  assert.equal(frames.length, 20);
  assert.deepEqual(frames.map((f) => f.seq), Array.from({ length: 20 }, (_, i) => i));
  assert.equal(frames[0]!.data.length, 64);
  // frame 5: BGR (50, 205, 128) -> grey ~ 0.114*50 + 0.587*205 + 0.299*128 = 164.1 -> (164.1/255 - 0.5)/0.25
  const want = (164.1 / 255 - 0.5) / 0.25;
  assert.ok(Math.abs(frames[5]!.data[27]! - want) < 0.1, `grey value ${frames[5]!.data[27]} vs ${want}`);
  const s = src.stats();
  assert.equal(s.read, 20);
  assert.equal(s.dropped, 0);

  const strided = new OpenCvSource({ source: SourceSchema.parse({ uri: video, stride: 3 }), preprocess: SPEC, batch: 4 });
  await strided.start();
  const every3 = await drain(strided);
  await strided.stop();
  assert.deepEqual(every3.map((f) => f.seq), [0, 3, 6, 9, 12, 15, 18]);
  assert.equal(strided.stats().skipped, 13);
});

test('all mode moves frames in chunks of a batch: every frame, in order, each with its own values', async () => {
  const dir = tmp();
  const video = join(dir, 'clip.avi');
  makeVideo(video, 21);
  // 21 frames in chunks of 8: two full chunks and a partial one flushed at the end of the file.
  const src = new OpenCvSource({ source: SourceSchema.parse({ uri: video }), preprocess: SPEC, batch: 8 });
  await src.start();
  let frames: Frame[];
  try {
    frames = await drain(src);
  } finally {
    await src.stop();
  }
  assert.deepEqual(frames.map((f) => f.seq), Array.from({ length: 21 }, (_, i) => i));
  for (const [i, f] of frames.entries()) {
    assert.equal(f.data.length, 64);
    // frame i is the flat BGR colour (v, 255 - v, 128) with v = 10 i: grey 0.114 v + 0.587 (255 - v) + 0.299 * 128
    const v = (i * 10) % 250;
    const want = ((0.114 * v + 0.587 * (255 - v) + 0.299 * 128) / 255 - 0.5) / 0.25;
    assert.ok(Math.abs(f.data[0]! - want) < 0.1 && Math.abs(f.data[63]! - want) < 0.1, `frame ${i}: ${f.data[0]} vs ${want}`);
  }
  const pos = frames.map((f) => f.positionMs ?? NaN);
  assert.ok(pos.every((p, i) => i === 0 || p > pos[i - 1]!), `positions increase: ${pos.join(', ')}`);
  assert.equal(src.stats().delivered, 21);
});

test('latest-frame mode drops frames while the consumer is busy', async () => {
  const dir = tmp();
  const video = join(dir, 'clip.avi');
  makeVideo(video, 60);
  const src = new OpenCvSource({ source: SourceSchema.parse({ uri: video, mode: 'latest' }), preprocess: SPEC });
  await src.start();
  const first = await src.next(5000);
  assert.notEqual(typeof first, 'string');
  await until(() => src.stats().read === 60, 10_000, 'the whole file read');
  const rest = await drain(src);
  await src.stop();
  const s = src.stats();
  assert.ok(s.dropped > 40, `dropped ${s.dropped}`);
  assert.equal(s.delivered, 1 + rest.length);
  assert.equal(s.read, s.delivered + s.dropped);
  assert.ok(rest.length <= 2, 'only the newest frames remain');
  assert.ok(rest.at(-1)!.seq >= 58, 'and they are the latest');
});

test('a source that disappears is reopened with backoff and carries on', async () => {
  const dir = tmp();
  const video = join(dir, 'clip.avi');
  const away = join(dir, 'away.avi');
  makeVideo(video, 10);
  const src = new OpenCvSource({ source: SourceSchema.parse({ uri: video, loop: true, reconnect: { initialDelayMs: 20, maxDelayMs: 80 } }), preprocess: SPEC, batch: 2 });
  const events: SourceEvent[] = [];
  src.onEvent((e) => events.push(e));
  await src.start();
  const before = await drain(src, 15);
  assert.equal(before.length, 15, 'looping past the end of the file');
  renameSync(video, away);
  // Consume until the capture hits the end of the file and fails to reopen it (several times).
  await until(async () => {
    const f = await src.next(50);
    void f;
    return events.filter((e) => e.type === 'failed').length >= 3;
  }, 10_000, 'failed reopen attempts');
  const failed = events.filter((e): e is Extract<SourceEvent, { type: 'failed' }> => e.type === 'failed');
  assert.match(failed[0]!.error, /not found/);
  assert.ok(failed[1]!.retryInMs >= failed[0]!.retryInMs, 'backoff grows');
  assert.ok(failed.every((f) => f.retryInMs <= 80), 'backoff is capped');
  assert.equal(src.stats().connected, false);
  renameSync(away, video);
  const after = await drain(src, 12);
  await src.stop();
  assert.equal(after.length, 12, 'frames flow again');
  const s = src.stats();
  assert.ok(s.reconnects >= 1, `reconnects ${s.reconnects}`);
  assert.ok(s.failures >= 3);
  assert.ok(after.at(-1)!.seq > before.at(-1)!.seq, 'sequence numbers keep growing');
});

test('the back-off between failed opens is waited out while the consumer asks for frames', async () => {
  const dir = tmp();
  const src = new OpenCvSource({ source: SourceSchema.parse({ uri: join(dir, 'missing.avi'), reconnect: { initialDelayMs: 400, factor: 1, maxDelayMs: 400 } }), preprocess: SPEC, batch: 2 });
  const failedAt: number[] = [];
  src.onEvent((e) => { if (e.type === 'failed') failedAt.push(Date.now()); });
  await src.start();
  // each next() hands the capture process credits, which used to end its back-off at once
  await until(async () => { await src.next(20); return failedAt.length >= 3; }, 20_000, 'three failed opens');
  await src.stop();
  const gaps = failedAt.slice(1, 3).map((t, i) => t - failedAt[i]!);
  // a lower bound only (the waits are 400 ms; messages may arrive late, never early by much)
  assert.ok(gaps.every((g) => g >= 200), `gaps between attempts ${gaps.join(', ')} ms`);
});

test('a file that is there but is no video gives up at once, saying so, instead of being retried', async () => {
  const dir = tmp();
  const path = join(dir, 'notes.mp4');
  writeFileSync(path, 'not a video\n');
  const src = new OpenCvSource({ source: SourceSchema.parse({ uri: path, reconnect: { initialDelayMs: 60_000 } }), preprocess: SPEC, batch: 2 });
  const events: SourceEvent[] = [];
  src.onEvent((e) => events.push(e));
  await src.start();
  await until(async () => { await src.next(20).catch(() => undefined); return events.some((e) => e.type === 'fatal'); }, 20_000, 'the source giving up');
  await src.stop();
  assert.equal(events.some((e) => e.type === 'failed'), false, 'no retry with back-off');
  const fatal = events.find((e) => e.type === 'fatal') as { error: string };
  assert.match(fatal.error, /notes\.mp4' is not a video OpenCV can decode/);
});

test('a file capture process that crashes is restarted after the last frame it sent, not from the start', async () => {
  const dir = tmp();
  const video = join(dir, 'clip.avi');
  makeVideo(video, 24);
  const src = new OpenCvSource({ source: SourceSchema.parse({ uri: video }), preprocess: SPEC, batch: 4 });
  const events: SourceEvent[] = [];
  src.onEvent((e) => events.push(e));
  await src.start();
  let frames: Frame[];
  try {
    const before = await drain(src, 9);
    const pid = src.processId();
    assert.ok(pid, 'a capture process');
    // a crash in native code, as far as the agent can tell
    process.kill(pid, 'SIGKILL');
    await until(() => src.processId() !== pid, 20_000, 'a new capture process');
    frames = [...before, ...(await drain(src))];
  } finally {
    await src.stop();
  }
  const failed = events.find((e) => e.type === 'failed') as { error: string } | undefined;
  assert.match(failed?.error ?? '', /capture process exited \(SIGKILL\); restarting it after frame \d+/);
  assert.deepEqual(frames.map((f) => f.seq), Array.from({ length: 24 }, (_, i) => i), 'every frame once, in order');
  for (const [i, f] of frames.entries()) {
    const v = (i * 10) % 250;
    const want = ((0.114 * v + 0.587 * (255 - v) + 0.299 * 128) / 255 - 0.5) / 0.25;
    assert.ok(Math.abs(f.data[0]! - want) < 0.1, `frame ${i} holds picture ${i}: ${f.data[0]} vs ${want}`);
  }
  const pos = frames.map((f) => f.positionMs ?? NaN);
  assert.ok(pos.every((p, i) => i === 0 || p > pos[i - 1]!), `positions increase: ${pos.join(', ')}`);
  const s = src.stats();
  assert.equal(s.read, 24, 'frames passed over after the seek are not read twice');
  assert.equal(s.failures, 1);
});

test('resumePoint: files carry on after the last frame, by position, else by index; live sources do not', () => {
  assert.equal(resumePoint('v4l2', false, { seq: 7 }), undefined);
  assert.equal(resumePoint('rtsp', false, { seq: 7, positionMs: 280 }), undefined);
  assert.equal(resumePoint('file', false, undefined), undefined, 'nothing received: from the start');
  assert.deepEqual(resumePoint('file', true, { seq: 7, positionMs: 280 }), { seq: 8, afterMs: 280 });
  // no timestamps (NaN, or 0 past the first frame): the sequence number is the index in the file
  assert.deepEqual(resumePoint('file', false, { seq: 7, positionMs: NaN }), { seq: 8, frame: 8 });
  assert.deepEqual(resumePoint('file', false, { seq: 0, positionMs: 0 }), { seq: 1, frame: 1 });
  // ... unless the file loops: the sequence keeps counting, the file starts over
  assert.deepEqual(resumePoint('file', true, { seq: 30 }), { seq: 31 });
});
