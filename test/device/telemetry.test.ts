// The agent against a real MQTT broker (sdk/telemetry's embedded one): reports, events, a command
// from the fleet, and the final status at shutdown.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import mqtt from 'mqtt';
import pino from 'pino';
import { Agent } from '../../device/agent.ts';
import { parseAgentConfig } from '../../device/config.ts';
import { startEmbeddedBroker } from '../../sdk/telemetry/index.ts';
import { FakeRunner, FakeSource, tmp, until } from './helpers.ts';

test('telemetry over MQTT: reports, checkpoint events, a pause command, stopped status', async () => {
  const broker = await startEmbeddedBroker({ port: 0 });
  const dir = tmp();
  const config = parseAgentConfig({
    storage: { path: join(dir, 'agent.db') },
    http: { enabled: false },
    batch: { size: 4, maxWaitMs: 20 },
    adaptation: { checkpointEvery: 5 },
    telemetry: { enabled: true, url: broker.url, deviceId: 'dev1', intervalSec: 0.2 },
  });
  const sub = await mqtt.connectAsync(broker.url);
  const got: { topic: string; body: Record<string, unknown> }[] = [];
  sub.on('message', (topic, payload) => got.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> }));
  await sub.subscribeAsync('ttaq/v1/dev1/#', { qos: 1 });
  const agent = await Agent.create(config, {
    logger: pino({ level: 'silent' }),
    runnerFactory: async () => new FakeRunner('m'),
    sourceFactory: (spec) => new FakeSource(spec, Infinity, 1),
  });
  try {
    await agent.start();
    await until(() => got.some((m) => m.topic.endsWith('/telemetry')), 10_000, 'a telemetry report');
    const rep = got.find((m) => m.topic.endsWith('/telemetry'))!.body;
    assert.equal(rep['provider'], 'cpu');
    assert.equal((rep['classHistogram'] as number[]).length, 4);
    assert.ok((rep['seq'] as number) >= 1);
    await until(() => got.some((m) => m.topic.endsWith('/events') && m.body['type'] === 'checkpoint'), 10_000, 'a checkpoint event');

    await sub.publishAsync('ttaq/v1/dev1/cmd/pause', JSON.stringify({ id: 'c1', args: {} }), { qos: 1 });
    await until(() => got.some((m) => m.topic.endsWith('/cmd/pause/reply')), 10_000, 'the reply');
    const reply = got.find((m) => m.topic.endsWith('/cmd/pause/reply'))!.body;
    assert.equal(reply['ok'], true, JSON.stringify(reply));
    assert.equal(agent.status()['paused'], true);
    await until(() => got.some((m) => m.topic.endsWith('/events') && m.body['type'] === 'paused'), 5000, 'paused event');
  } finally {
    await agent.stop();
  }
  await until(() => got.some((m) => m.topic.endsWith('/status') && m.body['state'] === 'stopped'), 5000, 'stopped status');
  await sub.endAsync();
  await broker.close();
});
