// The telemetry benchmark against a real Mosquitto that drops what is over its per-client queue:
// it stops after --stall-seconds with an error that names the broker setting, instead of waiting
// and dying with a stack trace, and it leaves no persistent session behind on the broker.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import mqtt from 'mqtt';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { benchTelemetry } from '../../sdk/telemetry/bench.ts';
import { MOSQUITTO_SKIP, startMosquitto, tempDir } from './helpers.ts';

const dir = tempDir();
after(() => dir.cleanup());

/** Whether the broker still holds a session for this client id (CONNACK's session-present flag). */
async function sessionPresent(url: string, clientId: string): Promise<boolean> {
  const c = mqtt.connect(url, { clientId, clean: false, reconnectPeriod: 0 });
  const present = await new Promise<boolean>((resolve, reject) => {
    c.once('connect', (ack) => resolve(ack.sessionPresent));
    c.once('error', reject);
  });
  // leave no session of our own: reconnect clean
  await c.endAsync();
  const d = await mqtt.connectAsync(url, { clientId, clean: true, reconnectPeriod: 0 });
  await d.endAsync();
  return present;
}

test('a broker that drops over its queue limit: a stall error naming max_queued_messages, no session left', { skip: MOSQUITTO_SKIP }, async () => {
  const b = await startMosquitto({ dir: dir.dir, extra: ['allow_anonymous true', 'max_queued_messages 50'] });
  try {
    await assert.rejects(benchTelemetry({ broker: b.url, messages: 400, devices: 2, stallSeconds: 1 }), (e: unknown) => {
      assert.ok(isTtaqError(e) && e.code === 'TELEMETRY_TIMEOUT', String(e));
      assert.match(e.message, /^receiver benchmark: \d+ of 400 messages arrived, then none for 1 s/);
      assert.match(e.message, /max_queued_messages/);
      assert.ok((e.details as { arrived: number }).arrived < 400);
      return true;
    });
    assert.equal(await sessionPresent(b.url, 'bench-rx'), false, 'the benchmark receiver session is gone');
  } finally {
    await b.stop();
  }
});

// The same run against a broker whose queue holds the whole burst: every message arrives, the
// result reports both legs, and the receiver's session is still removed afterwards.
test('a broker that queues the burst: the benchmark completes and leaves no session', { skip: MOSQUITTO_SKIP }, async () => {
  const b = await startMosquitto({ dir: dir.dir, extra: ['allow_anonymous true', 'max_queued_messages 10000'] });
  try {
    const r = await benchTelemetry({ broker: b.url, messages: 400, devices: 2, stallSeconds: 5 });
    assert.equal(r.receiver.broker, b.url);
    assert.equal(r.receiver.messages, 400, 'every message arrived');
    assert.ok(r.receiver.msgsPerS > 0 && Number.isFinite(r.receiver.msgsPerS), JSON.stringify(r.receiver));
    assert.ok(r.agent.msgsPerS > 0 && Number.isFinite(r.agent.msgsPerS), JSON.stringify(r.agent));
    assert.equal(await sessionPresent(b.url, 'bench-rx'), false, 'the benchmark receiver session is gone');
  } finally {
    await b.stop();
  }
});
