// The SQLite outbox: sequence numbers, order, acknowledgement, bounds with drop counters, reopen,
// and migrations.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { Outbox, OUTBOX_SCHEMA_VERSION } from '../../sdk/telemetry/index.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { tempDir } from './helpers.ts';

const tmp = tempDir('ttaq-outbox-');
after(() => tmp.cleanup());
const stamp = (extra = '') => (seq: number, ts: number) => JSON.stringify({ seq, ts, extra });

test('append stamps 1, 2, 3 ... per device; pending is oldest first; ack deletes', () => {
  const box = new Outbox({ path: ':memory:', now: () => 1000 });
  const a = box.append('d1', 't/1', stamp());
  const b = box.append('d1', 't/1', stamp());
  const c = box.append('d2', 't/2', stamp());
  assert.deepEqual([a.seq, b.seq, c.seq], [1, 2, 1]);
  assert.deepEqual(JSON.parse(a.payload), { seq: 1, ts: 1000, extra: '' });
  assert.deepEqual(box.pending().map((r) => r.id), [a.id, b.id, c.id]);
  assert.deepEqual(box.pending(a.id, 1).map((r) => r.id), [b.id]);
  box.ack(b.id);
  box.ack(b.id); // twice is harmless
  assert.deepEqual(box.pending().map((r) => r.seq), [1, 1]);
  assert.equal(box.size, 2);
  assert.equal(box.stats().bytes, Buffer.byteLength(a.payload) + Buffer.byteLength(c.payload));
  box.close();
});

test('reopen: pending messages and the sequence counter survive', () => {
  const path = join(tmp.dir, 'reopen.sqlite');
  const box = new Outbox({ path });
  for (let i = 0; i < 5; i++) box.append('d', 't', stamp());
  box.ack(box.pending()[0]!.id);
  box.close();
  const again = new Outbox({ path });
  assert.equal(again.size, 4);
  assert.deepEqual(again.pending().map((r) => r.seq), [2, 3, 4, 5]);
  assert.equal(again.append('d', 't', stamp()).seq, 6);
  assert.equal(again.stats().nextSeq.d, 7);
  again.close();
});

test('bounds: count, bytes and age drop the oldest and count why', () => {
  let now = 0;
  const box = new Outbox({ path: ':memory:', maxMessages: 10, maxBytes: 1e9, maxAgeMs: 60_000, now: () => now });
  for (let i = 0; i < 25; i++) box.append('d', 't', stamp());
  assert.equal(box.size, 10);
  assert.deepEqual(box.pending().map((r) => r.seq), [16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
  assert.equal(box.stats().dropped.max_messages, 15);

  const small = new Outbox({ path: ':memory:', maxBytes: 1000, now: () => 0 });
  const pad = 'x'.repeat(80);
  for (let i = 0; i < 30; i++) small.append('d', 't', stamp(pad));
  const each = Buffer.byteLength(JSON.stringify({ seq: 10, ts: 0, extra: pad }));
  assert.ok(small.stats().bytes <= 1000, `bytes ${small.stats().bytes}`);
  assert.ok(small.stats().bytes > 1000 - 2 * each, 'dropped no more than needed');
  assert.equal(small.stats().dropped.max_bytes + small.size, 30);
  assert.equal(small.pending().at(-1)!.seq, 30, 'the newest is kept');

  // Age: messages older than maxAgeMs go at the next append (checked at most once a second).
  now = 10_000;
  box.append('d', 't', stamp());
  now = 75_000;
  box.append('d', 't', stamp());
  assert.deepEqual(box.pending().map((r) => r.seq), [27], 'everything older than 60 s is gone');
  assert.equal(box.stats().dropped.max_age, 10);
  assert.equal(box.stats().dropped.max_messages, 16, 'seq 26 pushed seq 16 out');
  assert.equal(box.stats().droppedTotal, 26);
  assert.equal(box.append('d', 't', stamp()).seq, 28, 'drops never reuse sequence numbers');
  box.close();
  small.close();
});

test('drop counters persist; bad limits and newer schemas are refused with a way out', () => {
  const path = join(tmp.dir, 'drops.sqlite');
  const box = new Outbox({ path, maxMessages: 2 });
  for (let i = 0; i < 5; i++) box.append('d', 't', stamp());
  box.close();
  const again = new Outbox({ path, maxMessages: 2 });
  assert.equal(again.stats().dropped.max_messages, 3);
  again.close();

  assert.throws(() => new Outbox({ path: ':memory:', maxMessages: 0 }), (e) => isTtaqError(e) && e.code === 'CONFIG_INVALID' && e.message.includes('maxMessages'));
  const future = join(tmp.dir, 'future.sqlite');
  const db = new Database(future);
  db.pragma(`user_version = ${OUTBOX_SCHEMA_VERSION + 1}`);
  db.close();
  assert.throws(() => new Outbox({ path: future }), (e) => isTtaqError(e) && e.code === 'TELEMETRY_OUTBOX' && e.message.includes('upgrade ttaq'));
  // a path that cannot be made (under a file) is refused with the path named
  const file = join(tmp.dir, 'plain-file');
  writeFileSync(file, '');
  assert.throws(() => new Outbox({ path: join(file, 'x.sqlite') }), (e) => isTtaqError(e) && e.code === 'TELEMETRY_OUTBOX' && e.message.includes('plain-file'));
});

test('an outbox under folders that do not exist yet creates them and keeps its messages', () => {
  const path = join(tmp.dir, 'spool', 'cam-1', 'outbox.sqlite');
  const box = new Outbox({ path });
  box.append('cam-1', 't/1', stamp('kept'));
  box.close();
  const again = new Outbox({ path });
  assert.deepEqual(again.pending().map((r) => JSON.parse(r.payload).extra), ['kept']);
  again.close();
});
