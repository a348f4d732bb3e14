// The reset command's scopes: 'adaptation' puts the adapter back to the source parameters and keeps
// the saved checkpoints; 'all' also deletes this model's checkpoints (and the drift reference), so a
// restart starts from the source too. HTTP and MQTT share the argument schema.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { after, test } from 'node:test';
import pino from 'pino';
import { Agent } from '../../device/agent.ts';
import { parseAgentConfig } from '../../device/config.ts';
import { AgentStore } from '../../device/store.ts';
import { memoryTelemetry } from '../../device/telemetry.ts';
import { Operator, startEmbeddedBroker } from '../../sdk/telemetry/index.ts';
import { FakeRunner, FakeSource, tmp, until } from './helpers.ts';

const silent = pino({ level: 'silent' });
const started: Agent[] = [];
after(async () => { for (const a of started) await a.stop().catch(() => undefined); });

async function startAgent(db: string) {
  const runners: FakeRunner[] = [];
  const agent = await Agent.create(
    parseAgentConfig({ storage: { path: db }, http: { port: 0 }, batch: { size: 4, maxWaitMs: 20 }, adaptation: { checkpointEvery: 3 } }),
    {
      logger: silent,
      telemetry: memoryTelemetry(),
      runnerFactory: async () => { const r = new FakeRunner('reset-model'); runners.push(r); return r; },
      sourceFactory: (spec) => new FakeSource(spec, Infinity, 1),
    },
  );
  started.push(agent);
  await agent.start();
  return { agent, runner: () => runners[0]! };
}

const post = async (port: number, path: string, body?: unknown) => {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return { status: r.status, body: (await r.json()) as Record<string, any> };
};

function checkpointsIn(db: string): number {
  const st = AgentStore.open(db);
  try { return st.checkpointCount(); } finally { st.close(); }
}

test("POST /adaptation/reset: 'adaptation' keeps the checkpoints, 'all' deletes this model's; a bad scope is a 400 naming the valid ones", async () => {
  const db = join(tmp(), 'agent.db');
  const { agent, runner } = await startAgent(db);
  const port = agent.httpPort!;
  await until(() => checkpointsIn(db) >= 2, 10_000, 'two periodic checkpoints');
  // paused: no step, so no periodic checkpoint lands between the reset and the count
  assert.equal((await post(port, '/pause')).status, 200);
  const before = checkpointsIn(db);

  const plain = await post(port, '/adaptation/reset');
  assert.equal(plain.status, 200);
  assert.equal(plain.body['result']['scope'], 'adaptation');
  assert.equal(plain.body['result']['checkpointsDeleted'], 0);
  assert.equal(runner().resets, 1);
  assert.equal(checkpointsIn(db), before, "scope 'adaptation' leaves the checkpoints");

  const bad = await post(port, '/adaptation/reset', { scope: 'everything' });
  assert.equal(bad.status, 400);
  assert.match(bad.body['error']['message'], /"scope": "all"/);
  assert.equal(runner().resets, 1, 'a refused reset changes nothing');

  const all = await post(port, '/adaptation/reset', { scope: 'all' });
  assert.equal(all.status, 200);
  assert.equal(all.body['result']['scope'], 'all');
  assert.equal(all.body['result']['checkpointsDeleted'], before);
  assert.equal(runner().resets, 2);
  assert.equal(checkpointsIn(db), 0, "scope 'all' deletes this model's checkpoints");
  await agent.stop();
});

test("the fleet's reset command carries its scope to the agent", async () => {
  const broker = await startEmbeddedBroker({ port: 0 });
  const runner = new FakeRunner('m');
  const agent = await Agent.create(
    parseAgentConfig({
      storage: { path: join(tmp(), 'agent.db') },
      http: { enabled: false },
      batch: { size: 4, maxWaitMs: 20 },
      adaptation: { checkpointEvery: 3 },
      telemetry: { enabled: true, url: broker.url, deviceId: 'dev-reset', intervalSec: 0.2 },
    }),
    { logger: silent, runnerFactory: async () => runner, sourceFactory: (spec) => new FakeSource(spec, Infinity, 1) },
  );
  const op = await Operator.connect({ broker: broker.url });
  const sub = await mqtt.connectAsync(broker.url);
  let reports = 0;
  sub.on('message', () => reports++);
  await sub.subscribeAsync('ttaq/v1/dev-reset/telemetry', { qos: 1 });
  try {
    await agent.start();
    await until(() => runner.step >= 6, 10_000, 'six steps (two checkpoints)');
    await until(() => reports > 0, 10_000, 'a telemetry report (the agent is connected and subscribed)');
    const reply = await op.send('dev-reset', 'reset', {}, 5000);
    assert.equal((reply.result as { scope: string }).scope, 'adaptation');
    const all = await op.send('dev-reset', 'reset', { scope: 'all' }, 5000);
    assert.equal(all.ok, true, JSON.stringify(all.error));
    assert.equal((all.result as { scope: string }).scope, 'all');
    assert.ok((all.result as { checkpointsDeleted: number }).checkpointsDeleted >= 1);
  } finally {
    await agent.stop();
    await op.close();
    await sub.endAsync();
    await broker.close();
  }
});
