import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { AgentStore, SCHEMA_VERSION } from '../../device/store.ts';
import { DriftDetector, bnDistance } from '../../device/drift.ts';
import { Exposition, RateMeter, Window } from '../../device/metrics.ts';
import { tmp } from './helpers.ts';

test('schema, WAL, checkpoints per model with pruning, run log', () => {
  const path = join(tmp(), 'sub', 'agent.db');
  const st = AgentStore.open(path);
  assert.equal(st.schemaVersion, SCHEMA_VERSION);
  assert.equal(st.db.pragma('journal_mode', { simple: true }), 'wal');
  const run = st.beginRun({ a: 1 }, 'host');
  for (let step = 1; step <= 5; step++) {
    st.saveCheckpoint({ runId: run, modelSha256: 'a'.repeat(64), modelName: 'm', method: 'abl', step: step * 10, reason: 'periodic', state: new Uint8Array([step, 2, 3]) }, 3);
  }
  st.saveCheckpoint({ runId: run, modelSha256: 'b'.repeat(64), modelName: 'n', method: 'abl', step: 7, reason: 'shutdown', state: new Uint8Array([9]) }, 3);
  assert.equal(st.checkpointCount(), 4, 'three of model a kept, one of model b');
  assert.equal(st.latestCheckpoint()!.modelSha256, 'b'.repeat(64));
  const a = st.latestCheckpoint({ modelSha256: 'a'.repeat(64) })!;
  assert.equal(a.step, 50);
  assert.deepEqual(Array.from(a.state), [5, 2, 3]);
  st.event(run, 'info', 'start', 'hello', { x: 1 });
  st.endRun(run, 'signal');
  assert.deepEqual(st.events(5)[0]!.data, { x: 1 });
  assert.equal(st.runs(1)[0]!.endReason, 'signal');
  st.close();
  // Reopening keeps everything and does not migrate again.
  const again = AgentStore.open(path);
  assert.equal(again.checkpointCount(), 4);
  again.close();
});

test('a database from a newer ttaq is refused with a way out', () => {
  const path = join(tmp(), 'agent.db');
  const db = new Database(path);
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  db.close();
  assert.throws(() => AgentStore.open(path), /newer than this ttaq knows.*storage\.path/);
});

test('the prediction log is bounded', () => {
  const st = AgentStore.open(join(tmp(), 'agent.db'));
  const run = st.beginRun({}, 'h');
  for (let b = 0; b < 10; b++) {
    st.logPredictions(run, 'c'.repeat(64), Array.from({ length: 8 }, (_, i) => ({ at: Date.now(), seq: b * 8 + i, label: i % 3, confidence: 0.5, entropy: 0.1, adapted: b % 2 === 0 })), 20);
  }
  assert.equal(st.predictionCount(), 20);
  const seqs = (st.db.prepare('SELECT seq FROM predictions ORDER BY seq').all() as { seq: number }[]).map((r) => r.seq);
  assert.deepEqual(seqs, Array.from({ length: 20 }, (_, i) => 60 + i), 'the newest rows stay');
  st.close();
});

test('drift detector: quiet on a stable stream, fires on an entropy jump, then settles', () => {
  const d = new DriftDetector({ threshold: 4, momentum: 0.9, warmupBatches: 5 });
  const C = 10;
  let fired = 0;
  // stable: normalised entropy around 0.3 with small noise
  for (let i = 0; i < 40; i++) fired += d.update((0.3 + 0.01 * Math.sin(i)) * Math.log(C), C).shift ? 1 : 0;
  assert.equal(fired, 0, 'no false alarm on a stable stream');
  const jump = d.update(0.7 * Math.log(C), C);
  assert.ok(jump.shift, `shift detected (score ${jump.score})`);
  assert.ok(Math.abs(jump.entropy - 0.7) < 1e-9);
  for (let i = 0; i < 80; i++) d.update(0.7 * Math.log(C), C);
  assert.equal(d.update(0.7 * Math.log(C), C).shift, false, 'a persistent new domain becomes the reference');
});

test('BN distance: zero for matching statistics, grows with a mean shift', () => {
  const s = (dm: number) => [{ layer: 'bn', batchMean: new Float32Array([dm, dm]), batchVar: new Float32Array([1, 1]), refMean: new Float32Array([0, 0]), refVar: new Float32Array([1, 1]) }];
  assert.ok(Math.abs(bnDistance(s(0))) < 1e-6);
  // symmetric KL of unit-variance Gaussians = d^2 (1/v1 + 1/v2)/2 = d^2
  assert.ok(Math.abs(bnDistance(s(2)) - 4) < 1e-3, `${bnDistance(s(2))}`);
});

test('metrics: window quantiles, rate and Prometheus text', () => {
  const w = new Window(100);
  for (let i = 1; i <= 100; i++) w.add(i);
  assert.equal(w.quantile(0.5), 50);
  assert.equal(w.quantile(0.99), 99);
  assert.equal(w.count, 100);
  const r = new RateMeter(10_000);
  r.add(0, 0);
  r.add(30, 1000);
  r.add(30, 2000);
  assert.ok(Math.abs(r.rate(2000) - 30) < 1e-9);
  const t = new Exposition().counter('x_frames', 'Frames.', 3).gauge('x_info', 'Info.', 1, { model: 'a"b' }).summary('x_lat', 'Latency.', w).text();
  assert.match(t, /# TYPE x_frames_total counter\nx_frames_total 3\n/);
  assert.match(t, /x_info\{model="a\\"b"\} 1/);
  assert.match(t, /x_lat\{quantile="0.5"\} 50\n/);
  assert.match(t, /x_lat_count 100\n/);
});

test('checkpoints are kept per model and method: another method\'s saves do not prune them', () => {
  const st = AgentStore.open(join(tmp(), 'agent.db'));
  const run = st.beginRun({}, 'host');
  const save = (method: string, step: number) =>
    st.saveCheckpoint({ runId: run, modelSha256: 'a'.repeat(64), modelName: 'm', method, step, reason: 'periodic', state: new Uint8Array([step]) }, 2);
  save('abl:robust', 781);
  for (let s = 1; s <= 4; s++) save('tent', s);
  assert.equal(st.latestCheckpoint({ modelSha256: 'a'.repeat(64), method: 'abl:robust' })!.step, 781);
  assert.equal(st.latestCheckpoint({ modelSha256: 'a'.repeat(64), method: 'tent' })!.step, 4);
  assert.equal(st.latestCheckpoint({ modelSha256: 'a'.repeat(64) })!.step, 4, 'without a method: the model\'s newest');
  assert.equal(st.checkpointCount(), 3, 'two of tent, one of abl:robust');
  st.close();
});

test('another SQLite file (the telemetry outbox beside it) is refused as the agent database, naming it', () => {
  const path = join(tmp(), 'telemetry-outbox.db');
  const db = new Database(path);
  db.exec('CREATE TABLE seq (n INTEGER); CREATE TABLE outbox (id INTEGER PRIMARY KEY)');
  db.pragma('user_version = 3');
  db.close();
  assert.throws(() => AgentStore.open(path), (e: unknown) => e instanceof Error && /is not a ttaq agent database \(its tables: seq, outbox\)/.test(e.message) && (e as { code?: string }).code === 'CONFIG_INVALID');
});
