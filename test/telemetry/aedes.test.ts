// The embedded aedes broker: status / Last Will cycle, commands with replies and malformed ones,
// and an outage (stop/start of the listener) with exactly-once, in-order delivery.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../sdk/telemetry/index.ts';
import { tempDir } from './helpers.ts';
import { commandCycle, outage, statusCycle } from './scenarios.ts';

/** Outage length in seconds (the issue asks for 30 s; CI uses a short one). */
const OUTAGE_S = Number(process.env.TTAQ_OUTAGE_S ?? 3);

let broker: EmbeddedBroker;
const tmp = tempDir();
before(async () => {
  broker = await startEmbeddedBroker({ port: 0 });
});
after(async () => {
  await broker.close();
  tmp.cleanup();
});

test('aedes: status online -> Last Will offline -> online -> stopped, retained', async () => {
  await statusCycle(broker.url, tmp.dir);
});

test('aedes: commands get replies; malformed commands get error replies and the agent keeps running', async () => {
  await commandCycle(broker.url, tmp.dir);
});

test(`aedes: ${OUTAGE_S} s outage loses nothing and duplicates nothing`, { timeout: 60_000 + OUTAGE_S * 2000 }, async () => {
  const r = await outage(broker, tmp.dir, OUTAGE_S, false);
  assert.ok(r.connects >= 2, 'the publisher reconnected');
  process.stdout.write(`# aedes outage ${OUTAGE_S}s: ${JSON.stringify(r)}\n`);
});

test('aedes: a failed SQLite write is not acknowledged; the broker re-sends and it is stored once', async () => {
  const { FleetStore, Receiver, TelemetryClient } = await import('../../sdk/telemetry/index.ts');
  const { simulatedDevice } = await import('../../sdk/telemetry/simulate.ts');
  const { waitFor } = await import('./helpers.ts');
  const { join } = await import('node:path');
  const store = new FleetStore(join(tmp.dir, 'flaky.sqlite'));
  const real = store.ingestTelemetry.bind(store);
  let failures = 0;
  store.ingestTelemetry = (device, msg, payload, recv) => {
    if (msg.seq === 3 && failures === 0) {
      failures++;
      throw new Error('disk I/O error (simulated)');
    }
    return real(device, msg, payload, recv);
  };
  const rx = await Receiver.start({ broker: broker.url, db: store, clientId: 'rx-flaky', reconnectMs: 100 });
  const dev = new TelemetryClient({ broker: broker.url, device: 'cam-f', outbox: join(tmp.dir, 'f.sqlite'), reconnectMs: 100 });
  try {
    await dev.waitConnected();
    const sim = simulatedDevice(4);
    for (let i = 0; i < 6; i++) {
      dev.publishTelemetry(sim.telemetry(i));
      await new Promise((r) => setTimeout(r, 30)); // one message per receiver batch
    }
    await waitFor(() => store.device('cam-f')?.received === 6, 'all 6 stored after the re-send', 10_000);
    assert.equal(failures, 1);
    assert.deepEqual(store.series('cam-f').map((p) => p.seq), [1, 2, 3, 4, 5, 6]);
  } finally {
    await dev.stop();
    await rx.close();
    store.close();
  }
});

test('aedes: closing the receiver under load writes nothing after its DISCONNECT, and what it left unacknowledged comes again', async (t) => {
  const { Receiver, topics } = await import('../../sdk/telemetry/index.ts');
  const { simulatedDevice } = await import('../../sdk/telemetry/simulate.ts');
  const { waitFor } = await import('./helpers.ts');
  const { join } = await import('node:path');
  const { default: mqtt } = await import('mqtt');
  const db = join(tmp.dir, 'closing.sqlite');
  const logs: string[] = [];
  const log = (level: string, msg: string) => logs.push(`${level}: ${msg}`);
  // The receiver talks through a proxy that hands it the broker's bytes 50 ms late and closes its
  // side 100 ms after the broker did: messages then reliably come in after the receiver's
  // DISCONNECT, as they do now and then on a real network under load.
  const { createServer, connect } = await import('node:net');
  const piped = new Set<import('node:net').Socket>();
  const proxy = createServer((down) => {
    const up = connect(Number(new URL(broker.url).port), '127.0.0.1');
    piped.add(down).add(up);
    down.on('data', (d) => up.write(d));
    up.on('data', (d) => setTimeout(() => { if (!down.destroyed) down.write(d); }, 50));
    down.on('end', () => up.end());
    up.on('close', () => setTimeout(() => down.end(), 100));
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    proxy.close();
    for (const x of piped) x.destroy();
  });
  const via = `mqtt://127.0.0.1:${(proxy.address() as { port: number }).port}`;
  const receiver = () => Receiver.start({ broker: via, db, clientId: 'rx-closing', log });
  // subscribed before the first message: the persistent session then holds every one of them
  let rx = await receiver();
  // a device without an outbox, so QoS 1 messages keep arriving while the receiver closes
  const pub = await mqtt.connectAsync(broker.url, { clientId: 'pub-closing' });
  const sim = simulatedDevice(5);
  let seq = 0;
  let flooding = true;
  const flood = (async () => {
    while (flooding) {
      const batch = [];
      for (let k = 0; k < 100; k++) batch.push(pub.publishAsync(topics.telemetry('cam-closing'), JSON.stringify({ ...sim.telemetry(seq), seq: ++seq, ts: Date.now() }), { qos: 1 }));
      await Promise.all(batch);
    }
  })();
  try {
    for (let round = 0; round < 2; round++) {
      if (round > 0) rx = await receiver();
      try {
        await waitFor(() => rx.stats().stored >= 200, 'messages flowing', 20_000);
      } finally {
        await rx.close();
      }
    }
  } finally {
    flooding = false;
    await flood;
    await pub.endAsync();
  }
  assert.deepEqual(logs.filter((l) => /write after end|mqtt:/.test(l)), [], 'no write to the ended socket');
  // the same session again: the broker re-sends what the closing ones did not acknowledge
  const again = await receiver();
  try {
    await waitFor(() => again.store.device('cam-closing')?.received === seq, `all ${seq} messages stored`, 20_000);
    assert.equal(again.store.device('cam-closing')!.missing, 0);
  } finally {
    await again.close();
  }
  assert.deepEqual(logs.filter((l) => /write after end|mqtt:/.test(l)), []);
});
