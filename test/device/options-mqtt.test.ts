// set-options from the fleet: over a real (embedded aedes) broker the command reaches the agent's
// setOptions, the same function POST /options calls, so batching keys apply and an unknown key is
// refused with the same code and message on both paths.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import mqtt from 'mqtt';
import pino from 'pino';
import { Agent } from '../../device/agent.ts';
import { parseAgentConfig } from '../../device/config.ts';
import { Operator, startEmbeddedBroker } from '../../sdk/telemetry/index.ts';
import { FakeRunner, FakeSource, tmp, until } from './helpers.ts';

const post = async (port: number, path: string, body: unknown) => {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as { ok: boolean; error?: { code: string; message: string } } };
};

test('set-options over MQTT: batching and shift keys apply like POST /options; an unknown key is refused alike', async () => {
  const broker = await startEmbeddedBroker({ port: 0 });
  const dir = tmp();
  const config = parseAgentConfig({
    storage: { path: join(dir, 'agent.db') },
    http: { port: 0 },
    batch: { size: 4, maxWaitMs: 20 },
    telemetry: { enabled: true, url: broker.url, deviceId: 'dev-opt', intervalSec: 0.2 },
  });
  const sub = await mqtt.connectAsync(broker.url);
  let reports = 0;
  sub.on('message', (topic) => { if (topic.endsWith('/telemetry')) reports++; });
  await sub.subscribeAsync('ttaq/v1/dev-opt/telemetry', { qos: 1 });
  const runner = new FakeRunner('m');
  const agent = await Agent.create(config, {
    logger: pino({ level: 'silent' }),
    runnerFactory: async () => runner,
    sourceFactory: (spec) => new FakeSource(spec, Infinity, 1),
  });
  const op = await Operator.connect({ broker: broker.url });
  try {
    await agent.start();
    await until(() => reports > 0, 10_000, 'a telemetry report (the agent is connected and subscribed)');

    const patch = { batchSize: 2, maxWaitMs: 5, every: 2, shiftEnabled: false, shiftThreshold: 6, resetEvery: 1000 };
    const ok = await op.send('dev-opt', 'set-options', patch, 5000);
    assert.equal(ok.ok, true, JSON.stringify(ok.error));
    assert.deepEqual((ok.result as { applied: unknown }).applied, patch);
    const opts = agent.status()['options'] as Record<string, unknown>;
    assert.deepEqual(
      [opts['batchSize'], opts['maxWaitMs'], opts['every'], opts['shiftEnabled'], opts['shiftThreshold'], opts['resetEvery']],
      [2, 5, 2, false, 6, 1000],
    );
    assert.equal(agent.status()['batchSize'], 2, 'the batcher takes the new size');
    // every: 2 from the next batch on: about as many inference-only batches as adapting ones
    const [s0, i0] = [runner.step, runner.inferCalls];
    await until(() => runner.step + runner.inferCalls - s0 - i0 >= 20, 10_000, '20 batches');
    const ds = runner.step - s0, di = runner.inferCalls - i0;
    assert.ok(Math.abs(ds - di) <= 2, `adapt ${ds} vs infer ${di} batches with every: 2`);

    const refused = { bogus: 1, every: 3 };
    const viaMqtt = await op.send('dev-opt', 'set-options', refused, 5000);
    const viaHttp = await post(agent.httpPort!, '/options', refused);
    assert.equal(viaMqtt.ok, false);
    assert.equal(viaHttp.status, 409);
    assert.equal(viaMqtt.error!.code, 'CONFIG_INVALID');
    assert.equal(viaHttp.body.error!.code, 'CONFIG_INVALID');
    assert.match(viaHttp.body.error!.message, /^set-options: 'bogus' cannot change while the agent runs; edit agent\.yaml and restart \(runtime options: .*batchSize, maxWaitMs, every/);
    assert.ok(viaMqtt.error!.message.endsWith(viaHttp.body.error!.message), `same words over MQTT: ${viaMqtt.error!.message}`);
    assert.equal((agent.status()['options'] as Record<string, unknown>)['every'], 2, 'nothing of a refused patch applies');

    const tooBig = await op.send('dev-opt', 'set-options', { batchSize: 16 }, 5000);
    assert.equal(tooBig.ok, false);
    assert.match(tooBig.error!.message, /batchSize 16 is over 4/);
  } finally {
    await agent.stop();
    await op.close();
    await sub.endAsync();
    await broker.close();
  }
});
