// The receiver's fleet store and the dashboard's JSON API.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FleetStore, startDashboard, type Telemetry, type TelemetryEvent } from '../../sdk/telemetry/index.ts';
import { simulatedDevice } from '../../sdk/telemetry/simulate.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { tempDir } from './helpers.ts';

const tmp = tempDir('ttaq-store-');
after(() => tmp.cleanup());

function tele(seed: number, step: number, seq: number): Telemetry {
  return { ...simulatedDevice(seed).telemetry(step), paused: false, seq, ts: 1_700_000_000_000 + seq * 1000 } as Telemetry;
}

test('ingest: (device, seq) stored once; counters for duplicates, gaps and late arrivals', () => {
  const s = new FleetStore(join(tmp.dir, 'a.sqlite'));
  const put = (seq: number) => s.ingestTelemetry('cam', tele(1, seq, seq), JSON.stringify(tele(1, seq, seq)), 5);
  assert.equal(put(1), 'new');
  assert.equal(put(2), 'new');
  assert.equal(put(2), 'duplicate');
  assert.equal(put(5), 'new');
  assert.equal(put(4), 'new'); // late
  const ev: TelemetryEvent = { type: 'reset', reason: 'drift', seq: 6, ts: 7 };
  assert.equal(s.ingestEvent('cam', ev, JSON.stringify(ev)), 'new');
  assert.equal(s.ingestEvent('cam', ev, JSON.stringify(ev)), 'duplicate');
  const d = s.device('cam')!;
  assert.equal(d.received, 5);
  assert.equal(d.maxSeq, 6);
  assert.equal(d.missing, 1, 'seq 3 never came');
  assert.equal(d.duplicates, 2);
  assert.equal(d.outOfOrder, 1);
  assert.equal(d.last?.seq, 5, 'latest telemetry is the highest seq, not the last arrival');
  assert.deepEqual(s.arrivalOrder('cam'), [1, 2, 5, 4, 6]);
  assert.deepEqual(s.series('cam').map((p) => p.seq), [1, 2, 4, 5]);
  assert.deepEqual(s.series('cam', 2).map((p) => p.seq), [4, 5], 'the newest n, oldest first');
  assert.deepEqual(s.counts('cam'), { telemetry: 4, event: 1 });
  assert.equal(s.events('cam')[0]!.type, 'reset');
  const p = s.series('cam')[0]!;
  assert.ok(Math.abs(p.fps - tele(1, 1, 1).fps) < 1e-9);
  s.setStatus('cam', { state: 'offline', ts: 42 });
  assert.equal(s.device('cam')!.status, 'offline');
  s.recordCommand('cam', 'reset', 'command', 'id-1', null, '{}');
  s.recordCommand('cam', 'reset', 'reply', 'id-1', true, '{}');
  assert.deepEqual(s.commands('cam').map((c) => [c.kind, c.ok]), [['reply', true], ['command', null]]);
  s.close();

  const ro = new FleetStore(join(tmp.dir, 'a.sqlite'), { readonly: true });
  assert.equal(ro.devices().length, 1);
  assert.throws(() => ro.setStatus('cam', { state: 'online', ts: 1 }), (e) => isTtaqError(e) && e.code === 'TELEMETRY_STORE');
  ro.close();
  assert.throws(() => new FleetStore(join(tmp.dir, 'missing.sqlite'), { readonly: true }), (e) => isTtaqError(e) && e.message.includes('ttaq receive'));
});

test('dashboard API: fleet, device series, 404s with a hint, read-only', async () => {
  const s = new FleetStore(join(tmp.dir, 'dash.sqlite'));
  for (let i = 1; i <= 50; i++) s.ingestTelemetry('cam-a', tele(2, i, i), JSON.stringify(tele(2, i, i)));
  s.setStatus('cam-a', { state: 'online', ts: 1 });
  const dash = await startDashboard({ store: s, port: 0, stats: () => ({ stored: 50 }) });
  try {
    const fleet = await (await fetch(dash.url + 'api/fleet')).json() as { devices: { device: string; received: number }[]; receiver: unknown };
    assert.deepEqual(fleet.devices.map((d) => [d.device, d.received]), [['cam-a', 50]]);
    assert.deepEqual(fleet.receiver, { stored: 50 });
    const dev = await (await fetch(dash.url + 'api/devices/cam-a?limit=20')).json() as { series: { seq: number }[]; histogram: number[] };
    assert.equal(dev.series.length, 20);
    assert.equal(dev.series.at(-1)!.seq, 50);
    assert.equal(dev.histogram.length, 10);
    const html = await (await fetch(dash.url)).text();
    assert.ok(html.includes('<svg') || html.includes('lineChart'));
    const nf = await fetch(dash.url + 'api/devices/nope');
    assert.equal(nf.status, 404);
    assert.match(((await nf.json()) as { error: string }).error, /api\/fleet/);
    assert.equal((await fetch(dash.url + 'api/fleet', { method: 'POST' })).status, 405);
  } finally {
    await dash.close();
    s.close();
  }
});

test('a new fleet database gets its missing folders; a read-only open of a missing one still fails', () => {
  const path = join(tmp.dir, 'new', 'deeper', 'fleet.sqlite');
  assert.throws(() => new FleetStore(path, { readonly: true }), (e) => isTtaqError(e));
  const s = new FleetStore(path);
  assert.equal(s.ingestTelemetry('cam', tele(2, 1, 1), JSON.stringify(tele(2, 1, 1)), 5), 'new');
  s.close();
  const ro = new FleetStore(path, { readonly: true });
  assert.equal(ro.device('cam')!.received, 1);
  ro.close();
});
