// The acceptance hook (device/acceptance.ts). The real acceptance, accuracy with vs without
// adaptation on a corrupted stream, needs the bundled model (models/) and a stream written by
// `ttaq corrupt --video` with its labels sidecar; it runs when TTAQ_ACCEPTANCE_VIDEO points at the
// video and the bundled model exists.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { compareAdaptation } from '../../device/acceptance.ts';
import { BUNDLED_MODEL, parseAgentConfig } from '../../device/config.ts';
import { readVideoLabels } from '../../sdk/data/index.ts';
import { FakeRunner, FakeSource, tmp } from './helpers.ts';

test('acceptance plumbing: predictions are scored per frame against the labels', async () => {
  const dir = tmp();
  // FakeRunner predicts round(2 * value) % 4 with value = (seq % 7) / 7: labels chosen to match on seq % 7 < 4.
  const labels = Array.from({ length: 40 }, (_, s) => ((s % 7) < 4 ? Math.round((2 * (s % 7)) / 7) % 4 : 3 - (Math.round((2 * (s % 7)) / 7) % 4)));
  const expected = labels.filter((y, s) => Math.round((2 * (s % 7)) / 7) % 4 === y).length / 40;
  const config = parseAgentConfig({ storage: { path: join(dir, 'agent.db') }, batch: { size: 4, maxWaitMs: 20 } });
  const r = await compareAdaptation(config, labels, {
    runnerFactory: async () => new FakeRunner('m'),
    sourceFactory: (spec) => new FakeSource(spec, 40, 0),
  });
  assert.equal(r.source.frames, 40);
  assert.ok(Math.abs(r.source.accuracy - expected) < 1e-9, `${r.source.accuracy} vs ${expected}`);
  assert.equal(r.source.adaptSteps, 0);
  assert.ok(r.adapted.adaptSteps >= 10, 'one step per batch of at most 4 frames');
  assert.equal(r.adapted.frames, 40);
});

const video = process.env.TTAQ_ACCEPTANCE_VIDEO;
const ready = !!video && existsSync(video) && existsSync(BUNDLED_MODEL);

test('ACCEPTANCE: adaptation beats the source model on a corrupted stream (bundled model)', { skip: ready ? false : 'needs the bundled model and TTAQ_ACCEPTANCE_VIDEO (a ttaq corrupt --video stream with its labels sidecar)' }, async () => {
  const { labels } = await readVideoLabels(video!);
  const config = parseAgentConfig({ source: { uri: video }, model: { path: BUNDLED_MODEL, providers: ['cpu'] }, storage: { path: join(tmp(), 'agent.db') } });
  const r = await compareAdaptation(config, labels);
  assert.ok(r.adapted.accuracy > r.source.accuracy, `adapted ${r.adapted.accuracy} vs source ${r.source.accuracy}`);
});
