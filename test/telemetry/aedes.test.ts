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
