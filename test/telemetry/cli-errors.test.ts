// What the telemetry commands do with ordinary mistakes: a taken port, a bad flag, files that are
// not PEM, two receivers with one client id, oversized payloads and times no Date can hold. A
// command that fails must exit (a half-started receiver holds the fleet's session and stores
// messages nobody reads) and say what to change.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import {
  FleetStore, MAX_PAYLOAD_BYTES, parsePayload, readPem, Receiver, startEmbeddedBroker, TelemetrySchema, mqttOptions,
} from '../../sdk/telemetry/index.ts';
import { makeCerts, tempDir, waitFor } from './helpers.ts';

const TTAQ = new URL('../../tools/ttaq.ts', import.meta.url).pathname;
const tmp = tempDir('ttaq-cli-err-');
after(() => tmp.cleanup());

/** Runs ttaq; a command still running after 25 s is killed and reported with code null. */
async function ttaq(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  try {
    const r = await promisify(execFile)(process.execPath, ['--import', 'tsx', TTAQ, ...args], { encoding: 'utf8', timeout: 25_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number | string; killed?: boolean; stdout: string; stderr: string };
    return { code: x.killed ? null : Number(x.code), stdout: x.stdout, stderr: x.stderr };
  }
}

/** A TCP port held open by another server for the test's duration. */
async function takenPort(): Promise<{ port: number; close: () => Promise<void> }> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const a = s.address();
  return { port: typeof a === 'object' && a ? a.port : 0, close: () => new Promise((r) => s.close(() => r())) };
}

const telemetry = (seq: number, extra: Record<string, unknown> = {}) => ({
  seq, ts: 1_700_000_000_000 + seq, intervalS: 1, fps: 10, latencyP50Ms: 5, latencyP95Ms: 9, droppedFrames: 0,
  meanEntropy: 0.5, meanConfidence: 0.8, classHistogram: [1, 2], adaptLoss: null, adaptSteps: 0, resets: 0,
  driftScore: 0, provider: 'cpu', memoryMb: 100, modelSha256: 'a'.repeat(64), ...extra,
});

test('ttaq broker on a taken port reports it and exits instead of waiting for Ctrl-C', { timeout: 60_000 }, async () => {
  const held = await takenPort();
  try {
    const r = await ttaq(['broker', '--port', String(held.port)]);
    assert.equal(r.code, 1, `exit code (null: still running after 25 s); stderr: ${r.stderr}`);
    assert.match(r.stderr, /cannot listen on 127\.0\.0\.1:\d+.*pick another --port/);
  } finally {
    await held.close();
  }
});

test('ttaq receive checks --http before it connects, and exits when the dashboard cannot listen', { timeout: 90_000 }, async () => {
  const broker = await startEmbeddedBroker({ port: 0 });
  const held = await takenPort();
  try {
    const bad = await ttaq(['receive', '--broker', broker.url, '--db', join(tmp.dir, 'a.sqlite'), '--http', 'abc']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--http abc: expected an integer from 0 to 65535/);
    assert.equal(broker.aedes.connectedClients, 0);
    const busy = await ttaq(['receive', '--broker', broker.url, '--db', join(tmp.dir, 'b.sqlite'), '--http', String(held.port), '--client-id', 'rx-busy']);
    assert.equal(busy.code, 2, `exit code (null: still running after 25 s); stderr: ${busy.stderr}`);
    assert.match(busy.stderr, /dashboard cannot listen.*pick another --http port/);
    const every = await ttaq(['receive', '--broker', broker.url, '--db', join(tmp.dir, 'c.sqlite'), '--every', '0']);
    assert.equal(every.code, 2);
    assert.match(every.stderr, /--every 0: expected a number > 0/);
  } finally {
    await held.close();
    await broker.close();
  }
});

test('TLS files that are not PEM, or a key that is not the certificate\'s, are named before connecting', { timeout: 60_000 }, async () => {
  const notPem = join(tmp.dir, 'not.pem');
  writeFileSync(notPem, 'hello\n');
  const fleet = await ttaq(['fleet', 'cmd', 'cam-1', 'reset', '--broker', 'mqtts://127.0.0.1:1', '--cert', notPem, '--key', notPem]);
  assert.equal(fleet.code, 2, fleet.stderr);
  assert.match(fleet.stderr, /TLS certificate file .*not\.pem is not PEM/);
  const missing = await ttaq(['broker', '--port', '0', '--tls-cert', join(tmp.dir, 'missing.crt'), '--tls-key', join(tmp.dir, 'missing.key')]);
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /--tls-cert file .*missing\.crt cannot be read/);
  const badUsage = await ttaq(['fleet', 'cmd', 'cam/1', 'reset', '--broker', 'mqtt://127.0.0.1:1']);
  assert.equal(badUsage.code, 2, 'a device id no topic can carry is bad usage, found before connecting');
  assert.match(badUsage.stderr, /device id 'cam\/1' is not usable/);

  // a CA that is not PEM used to pass silently until the handshake failed
  assert.throws(() => readPem(notPem, 'CA'), /TLS CA file .* is not PEM; expected a PEM certificate/);
  makeCerts(tmp.dir, ['alice', 'bob']);
  const pem = (f: string) => join(tmp.dir, f);
  assert.doesNotThrow(() => mqttOptions({ broker: 'mqtts://127.0.0.1:8883', tls: { ca: pem('ca.crt'), cert: pem('alice.crt'), key: pem('alice.key') } }));
  assert.throws(
    () => mqttOptions({ broker: 'mqtts://127.0.0.1:8883', tls: { cert: pem('alice.crt'), key: pem('bob.key') } }),
    /certificate and key do not load together .*the key must be the certificate's own/,
  );
  assert.throws(() => readPem(pem('alice.crt'), 'key'), /does not parse as a PEM private key/);
});

test('payloads over the size limit and times past what a Date holds are refused; what is stored is what was validated', { timeout: 60_000 }, async () => {
  const big = JSON.stringify(telemetry(1, { pad: 'x'.repeat(MAX_PAYLOAD_BYTES) }));
  const r = parsePayload(TelemetrySchema, Buffer.from(big), 't');
  assert.equal(r.ok, false);
  if (!r.ok) assert.match(r.error.message, /over the 262144-byte limit/);
  const late = parsePayload(TelemetrySchema, JSON.stringify(telemetry(1, { ts: 8.7e15 })), 't');
  assert.equal(late.ok, false);
  if (!late.ok) assert.match(late.error.message, /milliseconds since the epoch/);

  const broker = await startEmbeddedBroker({ port: 0 });
  const rx = await Receiver.start({ broker: broker.url, db: join(tmp.dir, 'v.sqlite'), clientId: 'rx-v' });
  try {
    const mqtt = (await import('mqtt')).default;
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'pub-v' });
    await pub.publishAsync('ttaq/v1/cam-v/telemetry', JSON.stringify(telemetry(1, { unknownField: 'y'.repeat(1000) })), { qos: 1 });
    await pub.publishAsync('ttaq/v1/cam-v/telemetry', big, { qos: 1 });
    await pub.endAsync();
    await waitFor(() => rx.stats().messages === 2, 'both messages');
    assert.equal(rx.stats().stored, 1);
    assert.equal(rx.stats().invalid, 1);
    const stored = rx.store.device('cam-v');
    assert.ok(stored);
    assert.equal(JSON.stringify(stored.last).includes('unknownField'), false, 'unknown keys are not stored');
  } finally {
    await rx.close();
    await broker.close();
  }
});

test('fleet show prints a stored time no Date can hold instead of crashing', { timeout: 60_000 }, async () => {
  const db = join(tmp.dir, 'late.sqlite');
  const store = new FleetStore(db);
  // an older receiver accepted such times; the store takes what it is given
  store.ingestTelemetry('cam-late', telemetry(1, { ts: 8.7e15 }) as never, '{}');
  store.close();
  const r = await ttaq(['fleet', 'show', 'cam-late', '--db', db]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /device cam-late/);
});

test('two receivers with one client id are told so instead of silently splitting the fleet', { timeout: 60_000 }, async () => {
  const broker = await startEmbeddedBroker({ port: 0 });
  const warnings: string[][] = [[], []];
  const start = (i: number) => Receiver.start({
    broker: broker.url, db: join(tmp.dir, `dup${i}.sqlite`), clientId: 'rx-dup', reconnectMs: 100,
    log: (level, msg) => { if (level === 'warn') warnings[i]!.push(msg); },
  });
  const a = await start(0);
  const b = await start(1);
  try {
    const said = () => warnings.flat().some((w) => /same client id 'rx-dup'.*own --client-id/.test(w));
    await waitFor(said, 'the warning about a shared client id', 20_000);
  } finally {
    await a.close();
    await b.close();
    await broker.close();
  }
});

test('a broker that refuses the credentials is reported with its reason at once', { timeout: 60_000 }, async () => {
  const broker = await startEmbeddedBroker({
    port: 0,
    aedes: { authenticate: (_c, _u, _p, done) => done(Object.assign(new Error('no'), { returnCode: 4 }) as never, false) },
  });
  try {
    await assert.rejects(
      Receiver.start({ broker: broker.url, db: join(tmp.dir, 'auth.sqlite'), clientId: 'rx-auth', username: 'u', password: 'p', connectTimeoutMs: 20_000 }),
      /Connection refused: Bad username or password; check --username\/--password/,
    );
  } finally {
    await broker.close();
  }
});
