// Broker-agnostic scenarios, run against the embedded aedes broker and a real Mosquitto.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { z } from 'zod';
import { Operator, Receiver, TelemetryClient, type ConnectionOptions, type StatusState } from '../../sdk/telemetry/index.ts';
import { simulatedDevice } from '../../sdk/telemetry/simulate.ts';
import { sleep, waitFor } from './helpers.ts';

export interface BrokerHandle {
  readonly url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

const fast = { reconnectMs: 200, keepaliveS: 5, connectTimeoutMs: 3000 } as const;

/** online -> (crash) offline -> online -> (graceful) stopped, as the receiver sees it. */
export async function statusCycle(url: string, dir: string, conn: ConnOverrides = {}): Promise<void> {
  const rx = await Receiver.start({ broker: url, db: join(dir, 'status.sqlite'), clientId: 'rx-status', ...fast, ...conn.receiver });
  const seen: StatusState[] = [];
  rx.on('status', (d, s) => { if (d === 'cam-s') seen.push(s as StatusState); });
  try {
    const a = new TelemetryClient({ broker: url, device: 'cam-s', outbox: join(dir, 's1.sqlite'), ...fast, ...conn.device });
    await a.waitConnected();
    await waitFor(() => seen.at(-1) === 'online', 'status online');
    a.abort(); // dies without DISCONNECT: the broker publishes the Last Will
    await waitFor(() => seen.at(-1) === 'offline', 'Last Will offline');
    const b = new TelemetryClient({ broker: url, device: 'cam-s', outbox: join(dir, 's2.sqlite'), ...fast, ...conn.device });
    await b.waitConnected();
    await waitFor(() => seen.at(-1) === 'online', 'status online again');
    await b.stop();
    await waitFor(() => seen.at(-1) === 'stopped', 'status stopped');
    assert.deepEqual(seen, ['online', 'offline', 'online', 'stopped']);
    assert.equal(rx.store.device('cam-s')?.status, 'stopped');
  } finally {
    await rx.close();
  }
  // The status is retained: a newcomer learns it at once.
  const rx2 = await Receiver.start({ broker: url, db: join(dir, 'status2.sqlite'), clientId: 'rx-status-2', persistentSession: false, ...fast, ...conn.receiver });
  try {
    await waitFor(() => rx2.store.device('cam-s')?.status === 'stopped', 'retained status for a new receiver');
  } finally {
    await rx2.close();
  }
}

export interface ConnOverrides {
  device?: Partial<ConnectionOptions>;
  receiver?: Partial<ConnectionOptions>;
  operator?: Partial<ConnectionOptions>;
}

/** Valid commands get replies; malformed ones get error replies and the agent keeps running. */
export async function commandCycle(url: string, dir: string, conn: ConnOverrides = {}): Promise<void> {
  const rx = await Receiver.start({ broker: url, db: join(dir, 'cmd.sqlite'), clientId: 'rx-cmd', ...fast, ...conn.receiver });
  const dev = new TelemetryClient({ broker: url, device: 'cam-c', outbox: join(dir, 'c.sqlite'), ...fast, ...conn.device });
  const op = await Operator.connect({ broker: url, ...fast, ...conn.operator });
  const calls: string[] = [];
  let paused = false;
  dev.onCommand('reset', (a) => { calls.push(`reset:${a.scope}`); return { resetTo: 'source', scope: a.scope }; });
  dev.onCommand('pause', () => { paused = true; calls.push('pause'); });
  dev.onCommand('resume', () => { paused = false; calls.push('resume'); });
  dev.onCommand('set-options', (a) => { calls.push(`set:${JSON.stringify(a)}`); return a; });
  dev.onCommand('snapshot', () => { throw new Error('disk full'); });
  dev.onCommand('reload', (a) => { calls.push(`reload:${a.sha256}`); return { sha256: a.sha256 }; });
  dev.onCommand('echo', (a) => a.text.toUpperCase(), z.object({ text: z.string() }).strict());
  try {
    await dev.waitConnected();
    await sleep(100); // the device's command subscription is in place

    const r1 = await op.send('cam-c', 'reset', { scope: 'all' }, 5000);
    assert.equal(r1.ok, true);
    assert.deepEqual(r1.result, { resetTo: 'source', scope: 'all' });
    const r1b = await op.send('cam-c', 'reset', {}, 5000);
    assert.deepEqual(r1b.result, { resetTo: 'source', scope: 'adaptation' }, 'schema default applied');
    assert.equal((await op.send('cam-c', 'pause', {}, 5000)).ok, true);
    assert.equal(paused, true);
    const r2 = await op.send('cam-c', 'set-options', { lr: 0.0005, loss: 'abl' }, 5000);
    assert.deepEqual(r2.result, { lr: 0.0005, loss: 'abl' });
    assert.equal((await op.send('cam-c', 'echo', { text: 'hi' }, 5000)).result, 'HI');

    // Malformed or failing: each is an error reply with a code, never a crash.
    const bad: [string, unknown, string][] = [
      ['reset', { scope: 'everything' }, 'TELEMETRY_BAD_PAYLOAD'],
      ['pause', { now: true }, 'TELEMETRY_BAD_PAYLOAD'],
      ['set-options', { lr: -1 }, 'TELEMETRY_BAD_PAYLOAD'],
      ['set-options', {}, 'TELEMETRY_BAD_PAYLOAD'],
      ['reload', { sha256: 'abc', path: '/m.onnx' }, 'TELEMETRY_BAD_PAYLOAD'],
      ['self-destruct', {}, 'TELEMETRY_UNKNOWN_COMMAND'],
      ['snapshot', { label: 'x' }, 'TELEMETRY_COMMAND_FAILED'],
    ];
    for (const [name, args, code] of bad) {
      const r = await op.send('cam-c', name, args, 5000);
      assert.equal(r.ok, false, `${name} ${JSON.stringify(args)} must be rejected`);
      assert.equal(r.error?.code, code, `${name}: ${r.error?.message}`);
      assert.ok((r.error?.message.length ?? 0) > 10);
    }
    // Not JSON / no id: the reply says so with id null.
    const replies: unknown[] = [];
    dev.on('command', (_n, reply) => replies.push(reply));
    await op.publishRaw('ttaq/v1/cam-c/cmd/reset', '{not json');
    await op.publishRaw('ttaq/v1/cam-c/cmd/reset', JSON.stringify({ args: {} }));
    await waitFor(() => replies.length === 2, 'replies to two malformed commands');
    for (const r of replies as { id: unknown; ok: boolean; error: { code: string } }[]) {
      assert.equal(r.ok, false);
      assert.equal(r.id, null);
      assert.equal(r.error.code, 'TELEMETRY_BAD_PAYLOAD');
    }

    // Still alive: commands and telemetry both work.
    assert.equal((await op.send('cam-c', 'resume', {}, 5000)).ok, true);
    assert.equal(paused, false);
    dev.publishTelemetry(simulatedDevice(3).telemetry(0));
    await waitFor(() => rx.store.counts('cam-c').telemetry === 1, 'telemetry after malformed commands');
    assert.deepEqual(calls, ['reset:all', 'reset:adaptation', 'pause', 'set:{"loss":"abl","lr":0.0005}', 'resume']);
    assert.deepEqual(dev.stats().commands, { ok: 6, rejected: 8, failed: 1 });
    // The receiver logged the traffic (commands and replies).
    await waitFor(() => rx.store.commands('cam-c', 100).filter((c) => c.kind === 'reply').length === 15, 'receiver command log');
  } finally {
    await op.close();
    await dev.stop();
    await rx.close();
  }
}

export interface OutageResult {
  produced: number;
  stored: number;
  duplicates: number;
  /** Arrivals after a message with a higher seq (the stored series is in seq order regardless). */
  outOfOrder: number;
  connects: number;
}

/**
 * A publisher sends telemetry every `periodMs` while the broker is stopped for `outageS` seconds.
 * Afterwards the receiver's database must hold every message exactly once, in sequence order.
 * `strictArrival` also demands that they arrived in order: Mosquitto keeps a resumed session's
 * queue ahead of live messages; aedes 1.x interleaves them (the stored series is still 1..N).
 */
export async function outage(broker: BrokerHandle, dir: string, outageS: number, strictArrival: boolean, conn: ConnOverrides = {}, periodMs = 20): Promise<OutageResult> {
  const rx = await Receiver.start({ broker: broker.url, db: join(dir, 'outage.sqlite'), clientId: 'rx-outage', ...fast, ...conn.receiver });
  const dev = new TelemetryClient({ broker: broker.url, device: 'cam-o', outbox: join(dir, 'o.sqlite'), ...fast, ...conn.device });
  const sim = simulatedDevice(7);
  let produced = 0;
  const timer = setInterval(() => {
    const step = produced;
    dev.publishTelemetry(sim.telemetry(step));
    produced++;
    const ev = sim.event(step);
    if (ev) { dev.publishEvent(ev); produced++; }
  }, periodMs);
  try {
    await dev.waitConnected();
    await sleep(800);
    const before = produced;
    await broker.stop();
    await sleep(outageS * 1000);
    assert.ok(dev.stats().outbox.pending > 0, 'messages piled up in the outbox during the outage');
    await broker.start();
    await sleep(800);
    clearInterval(timer);
    assert.ok(produced > before + (outageS * 1000) / periodMs / 2, `the publisher kept producing (${before} -> ${produced})`);
    assert.equal(await dev.flush(20_000), true, 'outbox drained after the outage');
    await waitFor(() => rx.store.device('cam-o')?.received === produced, `receiver to hold ${produced} messages (has ${rx.store.device('cam-o')?.received})`, 20_000);
    await sleep(200);
    const d = rx.store.device('cam-o')!;
    const c = rx.store.counts('cam-o');
    assert.equal(c.telemetry + c.event, produced, 'every message stored');
    assert.equal(d.received, produced);
    assert.equal(d.maxSeq, produced);
    assert.equal(d.missing, 0);
    const expected = Array.from({ length: produced }, (_, i) => i + 1);
    assert.deepEqual(rx.store.series('cam-o', produced + 10).map((p) => p.seq).concat(rx.store.events('cam-o', 100).map((e) => e.seq)).sort((a, b) => a - b), expected, 'the series holds 1..N');
    const order = rx.store.arrivalOrder('cam-o');
    let late = 0;
    order.reduce((max, q) => { if (q < max) late++; return Math.max(max, q); }, 0);
    assert.equal(d.outOfOrder, late, 'the out-of-order counter counts late arrivals');
    if (strictArrival) {
      const jumps = order.flatMap((q, i) => (i > 0 && q !== order[i - 1]! + 1 ? [`#${i}: ${order[i - 1]} -> ${q}`] : [])).slice(0, 10);
      assert.equal(d.outOfOrder, 0, `arrived in order; jumps: ${jumps.join(', ')}`);
      assert.deepEqual(order, expected, 'arrival order is 1..N');
    }
    return { produced, stored: d.received, duplicates: d.duplicates, outOfOrder: d.outOfOrder, connects: dev.stats().connects };
  } finally {
    clearInterval(timer);
    await dev.stop(500);
    await rx.close();
  }
}
