// Topic scheme and payload schemas.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checkBrokerUrl,
  CommandArgSchemas,
  describeIssues,
  EventSchema,
  parsePayload,
  parseSetOptions,
  SET_OPTIONS_KEYS,
  parseTopic,
  receiverFilters,
  shared,
  StatusSchema,
  TelemetrySchema,
  topics,
} from '../../sdk/telemetry/index.ts';
import { simulatedDevice } from '../../sdk/telemetry/simulate.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';

test('topics: build and parse round trip; bad ids are refused with a way out', () => {
  assert.equal(topics.telemetry('cam-01'), 'ttaq/v1/cam-01/telemetry');
  assert.equal(topics.reply('cam-01', 'set-options'), 'ttaq/v1/cam-01/cmd/set-options/reply');
  assert.deepEqual(parseTopic('ttaq/v1/cam-01/status'), { kind: 'status', device: 'cam-01' });
  assert.deepEqual(parseTopic('ttaq/v1/cam-01/cmd/reset'), { kind: 'command', device: 'cam-01', command: 'reset' });
  assert.deepEqual(parseTopic('ttaq/v1/cam-01/cmd/reset/reply'), { kind: 'reply', device: 'cam-01', command: 'reset' });
  for (const t of ['ttaq/v2/cam-01/status', 'ttaq/v1/cam-01/other', 'ttaq/v1/cam-01/cmd', 'x/v1/a/status', 'ttaq/v1/cam-01/cmd/a/b']) {
    assert.equal(parseTopic(t), null, t);
  }
  for (const bad of ['', 'a/b', 'cam+', 'cam#', 'a b', 'x'.repeat(65)]) {
    assert.throws(() => topics.status(bad), (e) => isTtaqError(e) && e.code === 'TELEMETRY_BAD_TOPIC' && e.message.includes('letters'));
  }
  assert.equal(shared('rx', receiverFilters[1]), '$share/rx/ttaq/v1/+/telemetry');
  assert.equal(shared(undefined, 'a/b'), 'a/b');
});

test('schemas: simulated telemetry is valid; each broken field is named', () => {
  const body = simulatedDevice(1).telemetry(3);
  const ok = TelemetrySchema.safeParse({ ...body, seq: 1, ts: 1 });
  assert.ok(ok.success);
  const r = parsePayload(TelemetrySchema, JSON.stringify({ ...body, seq: 0, ts: 1, meanConfidence: 1.5, modelSha256: 'xyz' }), 'ttaq/v1/a/telemetry');
  assert.equal(r.ok, false);
  if (!r.ok) {
    assert.equal(r.error.code, 'TELEMETRY_BAD_PAYLOAD');
    for (const field of ['seq', 'meanConfidence', 'modelSha256', 'ttaq/v1/a/telemetry']) assert.ok(r.error.message.includes(field), `${field} in: ${r.error.message}`);
  }
  const nj = parsePayload(StatusSchema, Buffer.from('{oops'), 'ttaq/v1/a/status');
  assert.ok(!nj.ok && nj.error.message.includes('not JSON'));
  assert.ok(EventSchema.safeParse({ type: 'reset', reason: 'drift', seq: 4, ts: 9 }).success);
  assert.ok(!EventSchema.safeParse({ type: 'reset', reason: 'boredom', seq: 4, ts: 9 }).success);
  assert.ok(!EventSchema.safeParse({ type: 'reset', reason: 'drift' }).success, 'seq and ts are required');
});

test('command argument schemas: strict, with defaults', () => {
  assert.deepEqual(CommandArgSchemas.reset.parse({}), { scope: 'adaptation' });
  assert.ok(!CommandArgSchemas.pause.safeParse({ x: 1 }).success);
  assert.ok(!CommandArgSchemas['set-options'].safeParse({}).success, 'needs one option');
  assert.ok(!CommandArgSchemas['set-options'].safeParse({ lr: 0.01, bogus: 1 }).success, 'unknown option');
  assert.ok(CommandArgSchemas['set-options'].safeParse({ lr: 0.01, loss: 'abl', norm: 'robust' }).success);
  assert.ok(CommandArgSchemas['set-options'].safeParse({ batchSize: 4, maxWaitMs: 50, every: 2, shiftEnabled: false, shiftThreshold: 6 }).success, 'batching and shift keys');
  const sha = 'a'.repeat(64);
  assert.ok(CommandArgSchemas.reload.safeParse({ sha256: sha, path: '/models/m.onnx' }).success);
  assert.ok(!CommandArgSchemas.reload.safeParse({ sha256: sha }).success, 'path or url needed');
  assert.ok(!CommandArgSchemas.reload.safeParse({ sha256: sha, path: '/a', url: 'https://x/y' }).success, 'not both');
  assert.ok(!CommandArgSchemas.reload.safeParse({ sha256: 'A'.repeat(64), path: '/a' }).success, 'lowercase hex');
});

test('set-options: one schema for MQTT, POST /options and the fleet tool; unknown keys named with the way out', () => {
  assert.deepEqual(SET_OPTIONS_KEYS, ['loss', 'norm', 'lr', 'entropyMargin', 'robustAlpha', 'anchor', 'episodic', 'resetEvery', 'driftThreshold', 'batchSize', 'maxWaitMs', 'every', 'shiftEnabled', 'shiftThreshold']);
  assert.deepEqual(parseSetOptions({ batchSize: 2, maxWaitMs: 5, lr: 0.001 }), { batchSize: 2, maxWaitMs: 5, lr: 0.001 });
  const unknown = /set-options: 'bogus', 'method' cannot change while the agent runs; edit agent\.yaml and restart \(runtime options: loss, .*shiftThreshold\)/;
  assert.throws(() => parseSetOptions({ bogus: 1, method: 'tent', every: 3 }), (e: Error & { code?: string }) => e.code === 'CONFIG_INVALID' && unknown.test(e.message));
  // the schema carries the message itself, so a generic TelemetryClient's reply says the same
  const r = CommandArgSchemas['set-options'].safeParse({ bogus: 1, method: 'tent', every: 3 });
  assert.ok(!r.success);
  assert.match(describeIssues(r.error), /'bogus', 'method' cannot change while the agent runs/);
  assert.throws(() => parseSetOptions({ batchSize: 0 }), /set-options: 'batchSize': .*>=1; runtime options: loss/);
  assert.throws(() => parseSetOptions({ every: 1.5 }), /'every'/);
  assert.throws(() => parseSetOptions({}), /at least one option to change/);
  assert.throws(() => parseSetOptions(7), /set-options: .*expected object/);
});

test('broker URLs: the accepted schemes pass; a missing scheme, another scheme and a non-URL are named with the way out', () => {
  for (const ok of ['mqtt://localhost:1883', 'mqtts://broker.example:8883', 'ws://h:9001', 'wss://h/mqtt']) assert.equal(checkBrokerUrl(ok).href.startsWith(ok.split('://')[0]!), true, ok);
  const refused = (url: string, re: RegExp) => assert.throws(() => checkBrokerUrl(url), (e) => isTtaqError(e) && e.code === 'CONFIG_INVALID' && re.test(e.message), url);
  refused('localhost:1883', /'localhost:1883' has no scheme; write mqtt:\/\/localhost:1883/);
  refused('http://localhost:1883', /has scheme http:; use mqtt:\/\//);
  refused('::nope', /is not a URL/);
});
