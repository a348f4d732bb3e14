// The agent's telemetry against a Mosquitto that wants a password: the user name comes from the
// config, the password from the environment variable telemetry.passwordEnv names; a refused login
// is one clear error naming those settings; TLS files that are not there stop the start with the
// config key, and a failed start leaves the agent database free.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import mqtt from 'mqtt';
import pino from 'pino';
import { Agent } from '../../device/agent.ts';
import { parseAgentConfig } from '../../device/config.ts';
import { AgentStore } from '../../device/store.ts';
import { memoryTelemetry, telemetryCredentials } from '../../device/telemetry.ts';
import { isTtaqError, TtaqError } from '../../sdk/errors/index.ts';
import { TelemetryClient } from '../../sdk/telemetry/index.ts';
import { MOSQUITTO_SKIP, passwordFile, startMosquitto, tempDir, type Mosquitto } from '../telemetry/helpers.ts';
import { FakeRunner, FakeSource, tmp, until } from './helpers.ts';

const silent = pino({ level: 'silent' });
let broker: Mosquitto | undefined;
const brokerDir = tempDir();
after(async () => { await broker?.stop(); brokerDir.cleanup(); });

async function passwordBroker(): Promise<Mosquitto> {
  if (broker) return broker;
  const dir = brokerDir.dir;
  passwordFile(join(dir, 'passwd'), { 'cam-auth': 's3cret', receiver: 'rx-pass' });
  broker = await startMosquitto({ dir, extra: ['log_type notice', 'allow_anonymous false', `password_file ${join(dir, 'passwd')}`] });
  return broker;
}

test('the agent logs in with telemetry.username and the password from telemetry.passwordEnv', { skip: MOSQUITTO_SKIP }, async () => {
  const b = await passwordBroker();
  const sub = await mqtt.connectAsync(b.url, { username: 'receiver', password: 'rx-pass' });
  let reports = 0;
  sub.on('message', () => reports++);
  await sub.subscribeAsync('ttaq/v1/cam-auth/telemetry', { qos: 1 });
  process.env['TTAQ_TEST_MQTT_PW'] = 's3cret';
  const agent = await Agent.create(
    parseAgentConfig({
      storage: { path: join(tmp(), 'agent.db') },
      http: { enabled: false },
      batch: { size: 4, maxWaitMs: 20 },
      telemetry: { enabled: true, url: b.url, deviceId: 'cam-auth', intervalSec: 0.2, username: 'cam-auth', passwordEnv: 'TTAQ_TEST_MQTT_PW' },
    }),
    { logger: silent, runnerFactory: async () => new FakeRunner('m'), sourceFactory: (spec) => new FakeSource(spec, Infinity, 1) },
  );
  try {
    await agent.start();
    await until(() => reports > 0, 10_000, 'a telemetry report through the password broker');
  } finally {
    await agent.stop();
    await sub.endAsync();
    delete process.env['TTAQ_TEST_MQTT_PW'];
  }
});

test('a refused login is one connectError naming the user and the settings, and the client tries again', { skip: MOSQUITTO_SKIP }, async () => {
  const b = await passwordBroker();
  const logged: string[] = [];
  const client = new TelemetryClient({
    broker: b.url, device: 'cam-auth', username: 'cam-auth', password: 'wrong', outbox: join(tmp(), 'outbox.db'),
    refusedRetryMs: 100, log: (level, msg) => { if (level === 'error') logged.push(msg); },
  });
  const errors: Error[] = [];
  client.on('connectError', (e) => errors.push(e));
  try {
    await until(() => errors.length > 0, 10_000, 'connectError');
    assert.ok(isTtaqError(errors[0]) && errors[0].code === 'TELEMETRY_CONNECT_FAILED');
    assert.match(errors[0]!.message, /refused device cam-auth's login \((bad user name or password|not authorized); user name 'cam-auth'\)/);
    assert.match(errors[0]!.message, /telemetry\.username and the variable telemetry\.passwordEnv names/);
    // Tried again (mqtt.js alone would stop after a refused CONNACK), but said only once.
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(errors.length, 1);
    assert.equal(logged.length, 1);
    const refusals = b.log().match(/disconnected, not authorised/g)?.length ?? 0;
    assert.ok(refusals >= 2, `the broker saw ${refusals} refused attempt(s): ${b.log()}`);
  } finally {
    await client.stop(100);
  }
});

test('credential settings are checked at start: an empty password variable, a TLS file that is not there', async () => {
  const t = (telemetry: Record<string, unknown>) => parseAgentConfig({ telemetry: { enabled: true, ...telemetry } }).telemetry;
  await assert.rejects(telemetryCredentials(t({ username: 'cam-01' }), {}), (e: unknown) =>
    isTtaqError(e) && e.code === 'CONFIG_INVALID' && /TTAQ_MQTT_PASSWORD \(telemetry\.passwordEnv\) is empty/.test(e.message) && /EnvironmentFile=/.test(e.message));
  assert.deepEqual(await telemetryCredentials(t({ username: 'cam-01', passwordEnv: 'PW' }), { PW: 'x' }), { username: 'cam-01', password: 'x' });
  assert.deepEqual(await telemetryCredentials(t({}), { TTAQ_MQTT_PASSWORD: 'x' }), {}, 'no user name: nothing is sent');
  await assert.rejects(telemetryCredentials(t({ tls: { ca: '/nonexistent/ca.crt' } }), {}), (e: unknown) =>
    isTtaqError(e) && e.code === 'CONFIG_INVALID' && /^telemetry\.tls\.ca file \/nonexistent\/ca\.crt cannot be read/.test(e.message));
  assert.throws(() => parseAgentConfig({ telemetry: { passwordEnv: 'not a name' } }), /passwordEnv/);
});

test('a start that fails on the telemetry settings closes the run, so the database is free again', async () => {
  const db = join(tmp(), 'agent.db');
  const config = parseAgentConfig({ storage: { path: db }, http: { enabled: false }, telemetry: { enabled: true, url: 'mqtts://127.0.0.1:1', tls: { ca: '/nonexistent/ca.crt' } } });
  await assert.rejects(Agent.create(config, { logger: silent }), /telemetry\.tls\.ca/);
  const st = AgentStore.open(db);
  try {
    const run = st.runs(1)[0]!;
    assert.match(run.endReason ?? '', /^failed to start: telemetry\.tls\.ca/);
    assert.doesNotThrow(() => st.endRun(st.beginRun({}, 'h'), 'x'), 'another run may begin');
  } finally {
    st.close();
  }
});

test('a start that fails after create closes the telemetry connection and the source it opened', async () => {
  for (const failIn of ['model', 'source'] as const) {
    const telemetry = memoryTelemetry();
    let source: FakeSource | undefined;
    const agent = await Agent.create(parseAgentConfig({ storage: { path: join(tmp(), 'agent.db') }, http: { enabled: false } }), {
      logger: silent,
      telemetry,
      runnerFactory: async () => {
        if (failIn === 'model') throw new TtaqError('ONNX_READ_FAILED', 'cannot read model: no such file');
        return new FakeRunner('m');
      },
      sourceFactory: (spec) => {
        source = new FakeSource(spec, Infinity, 1);
        source.start = async () => { throw new TtaqError('SOURCE_FAILED', 'cannot open the camera'); };
        return source;
      },
    });
    await assert.rejects(agent.start(), failIn === 'model' ? /cannot read model/ : /cannot open the camera/);
    // Otherwise an embedded agent's MQTT client would go on reconnecting (and holding its outbox) after the failure.
    assert.equal(telemetry.closed, true, `failed in ${failIn}: telemetry closed`);
    if (failIn === 'source') assert.equal(source?.stopped, true, 'the source that failed to start is stopped');
  }
});

test('the agent logs a refused login at error, naming telemetry.username and telemetry.passwordEnv', { skip: MOSQUITTO_SKIP }, async () => {
  const b = await passwordBroker();
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s) as { level: number; msg: string }); } });
  process.env['TTAQ_TEST_MQTT_PW'] = 'wrong';
  const agent = await Agent.create(
    parseAgentConfig({
      storage: { path: join(tmp(), 'agent.db') },
      http: { enabled: false },
      telemetry: { enabled: true, url: b.url, deviceId: 'cam-auth', username: 'cam-auth', passwordEnv: 'TTAQ_TEST_MQTT_PW' },
    }),
    { logger, runnerFactory: async () => new FakeRunner('m'), sourceFactory: (spec) => new FakeSource(spec, Infinity, 1) },
  );
  try {
    await agent.start();
    const refusal = () => lines.filter((l) => l.level >= 50 && /refused device cam-auth's login/.test(l.msg));
    await until(() => refusal().length > 0, 10_000, 'the refusal in the agent log');
    assert.match(refusal()[0]!.msg, /^telemetry: .*user name 'cam-auth'.*telemetry\.username and the variable telemetry\.passwordEnv names/);
  } finally {
    await agent.stop();
    delete process.env['TTAQ_TEST_MQTT_PW'];
  }
});
