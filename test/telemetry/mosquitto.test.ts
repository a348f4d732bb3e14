// A real Mosquitto, started by the test on a free loopback port: the status / Last Will cycle,
// commands, an outage (SIGTERM, restart from its persistence file) with exactly-once, in-order
// delivery, and the ACL example (examples/fleet-receiver/acl.conf) keeping devices in their lane.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Operator, Receiver, TelemetryClient } from '../../sdk/telemetry/index.ts';
import { makeCerts, MOSQUITTO_SKIP, passwordFile, sleep, startMosquitto, tempDir, waitFor, type Mosquitto } from './helpers.ts';
import { commandCycle, outage, statusCycle } from './scenarios.ts';

const OUTAGE_S = Number(process.env.TTAQ_OUTAGE_S ?? 3);
const ACL_EXAMPLE = new URL('../../examples/fleet-receiver/acl.conf', import.meta.url).pathname;

describe('mosquitto', { skip: MOSQUITTO_SKIP }, () => {
  const tmp = tempDir('ttaq-mosq-');
  const brokers: Mosquitto[] = [];
  after(async () => {
    for (const b of brokers) await b.stop();
    tmp.cleanup();
  });
  const broker = async (name: string, extra?: string[], tls?: string[]) => {
    const dir = join(tmp.dir, name);
    mkdirSync(dir);
    const b = await startMosquitto({ dir, ...(extra ? { extra } : {}), ...(tls ? { tls } : {}) });
    brokers.push(b);
    return { b, dir };
  };

  test('status online -> Last Will offline -> online -> stopped, retained', async () => {
    const { b, dir } = await broker('status');
    await statusCycle(b.url, dir);
  });

  test('commands get replies; malformed commands get error replies and the agent keeps running', async () => {
    const { b, dir } = await broker('cmd');
    await commandCycle(b.url, dir);
  });

  test(`${OUTAGE_S} s broker outage (SIGTERM, restart): every message exactly once and in order`, { timeout: 60_000 + OUTAGE_S * 2000 }, async () => {
    const { b, dir } = await broker('outage');
    const r = await outage(b, dir, OUTAGE_S, true);
    assert.ok(r.connects >= 2);
    process.stdout.write(`# mosquitto outage ${OUTAGE_S}s: ${JSON.stringify(r)}\n`);
  });

  test('ACL example: a device cannot command another device, nor itself; operators can', async () => {
    const dir0 = join(tmp.dir, 'acl');
    mkdirSync(dir0);
    const acl = join(dir0, 'acl.conf');
    copyFileSync(ACL_EXAMPLE, acl);
    const pw = join(dir0, 'passwd');
    const users = { receiver: 'rx-secret', operator: 'op-secret', 'cam-01': 'pw-01', 'cam-02': 'pw-02' };
    passwordFile(pw, users);
    const { b, dir } = await broker('acl-broker', ['allow_anonymous false', `password_file ${pw}`, `acl_file ${acl}`]);
    const fast = { reconnectMs: 200, connectTimeoutMs: 3000 };
    const rx = await Receiver.start({ broker: b.url, db: join(dir, 'fleet.sqlite'), clientId: 'rx-acl', username: 'receiver', password: users.receiver, ...fast });
    const cam2 = new TelemetryClient({ broker: b.url, device: 'cam-02', outbox: join(dir, 'cam2.sqlite'), username: 'cam-02', password: users['cam-02'], ...fast });
    let resets = 0;
    cam2.onCommand('reset', () => { resets++; return 'done'; });
    const rogue = await Operator.connect({ broker: b.url, username: 'cam-01', password: users['cam-01'], ...fast });
    const op = await Operator.connect({ broker: b.url, username: 'operator', password: users.operator, ...fast });
    try {
      await cam2.waitConnected();
      await waitFor(() => rx.store.device('cam-02')?.status === 'online', 'cam-02 online at the receiver');
      // cam-01's credentials: forge a command for cam-02, and one for itself.
      await rogue.publishRaw('ttaq/v1/cam-02/cmd/reset', JSON.stringify({ id: 'forged-1', args: {} }));
      await rogue.publishRaw('ttaq/v1/cam-01/cmd/reset', JSON.stringify({ id: 'forged-2', args: {} }));
      // ... and telemetry under cam-02's name.
      await rogue.publishRaw('ttaq/v1/cam-02/status', JSON.stringify({ state: 'offline', ts: Date.now() }));
      // The operator's command goes through (positive control; also orders the broker's queue).
      const reply = await op.send('cam-02', 'reset', {}, 5000);
      assert.equal(reply.ok, true);
      await waitFor(() => rx.store.commands('cam-02').some((c) => c.kind === 'reply'), 'receiver logs the legitimate reply');
      await sleep(300);
      const log = [...rx.store.commands('cam-02', 100), ...rx.store.commands('cam-01', 100)];
      assert.deepEqual(log.filter((c) => c.kind === 'command').map((c) => c.cmdId), [reply.id], 'the receiver saw only the operator\'s command');
      assert.equal(resets, 1, 'cam-02 ran only the operator\'s reset');
      assert.equal(rx.store.device('cam-02')?.status, 'online', 'cam-01 could not overwrite cam-02\'s status');
      assert.equal(rx.store.device('cam-01'), undefined, 'nothing reached the receiver under cam-01');
      // A device cannot publish under another device's prefix: mosquitto drops it, nothing stored.
      const c1 = new TelemetryClient({ broker: b.url, device: 'cam-02', clientId: 'impostor', outbox: join(dir, 'imp.sqlite'), username: 'cam-01', password: users['cam-01'], ...fast });
      await c1.waitConnected();
      c1.publishEvent({ type: 'reset', reason: 'command' });
      await c1.flush(3000);
      await sleep(300);
      assert.equal(rx.store.counts('cam-02').event, 0, 'impostor events never stored');
      c1.abort();
    } finally {
      await rogue.close();
      await op.close();
      await cam2.stop();
      await rx.close();
    }
  });

  test('mutual TLS: certificate CN is the user name for the ACL; no certificate, no connection', async () => {
    const certs = join(tmp.dir, 'certs');
    mkdirSync(certs);
    makeCerts(certs, ['cam-tls', 'receiver']);
    const acl = join(certs, 'acl.conf');
    copyFileSync(ACL_EXAMPLE, acl);
    const { b, dir } = await broker('tls-broker', ['allow_anonymous false', `acl_file ${acl}`], [
      `cafile ${join(certs, 'ca.crt')}`, `certfile ${join(certs, 'broker.crt')}`, `keyfile ${join(certs, 'broker.key')}`,
      'require_certificate true', 'use_identity_as_username true',
    ]);
    const url = `mqtts://127.0.0.1:${b.port}`;
    const tlsOf = (name: string) => ({ ca: join(certs, 'ca.crt'), cert: join(certs, `${name}.crt`), key: join(certs, `${name}.key`) });
    const rx = await Receiver.start({ broker: url, db: join(dir, 'fleet.sqlite'), clientId: 'rx-tls', tls: tlsOf('receiver'), reconnectMs: 200 });
    const dev = new TelemetryClient({ broker: url, device: 'cam-tls', outbox: join(dir, 'o.sqlite'), tls: tlsOf('cam-tls'), reconnectMs: 200 });
    const anon = new TelemetryClient({ broker: url, device: 'cam-x', outbox: join(dir, 'x.sqlite'), tls: { ca: join(certs, 'ca.crt') }, reconnectMs: 200 });
    try {
      await dev.waitConnected(5000);
      for (let i = 0; i < 5; i++) dev.publishTelemetry((await import('../../sdk/telemetry/simulate.ts')).simulatedDevice(2).telemetry(i));
      await waitFor(() => rx.store.device('cam-tls')?.received === 5, 'telemetry over mutual TLS');
      await assert.rejects(anon.waitConnected(1500), (e: Error & { code?: string }) => e.code === 'TELEMETRY_CONNECT_FAILED');
    } finally {
      anon.abort();
      await dev.stop();
      await rx.close();
    }
  });

  test('shared subscription: two receivers in one group split the messages, none twice', async () => {
    const { b, dir } = await broker('share');
    const opts = { broker: b.url, share: 'fleet', reconnectMs: 200 };
    const r1 = await Receiver.start({ ...opts, db: join(dir, 'r1.sqlite'), clientId: 'rx-share-1' });
    const r2 = await Receiver.start({ ...opts, db: join(dir, 'r2.sqlite'), clientId: 'rx-share-2' });
    const dev = new TelemetryClient({ broker: b.url, device: 'cam-sh', outbox: join(dir, 'o.sqlite'), reconnectMs: 200 });
    try {
      await dev.waitConnected();
      const { simulatedDevice } = await import('../../sdk/telemetry/simulate.ts');
      for (let i = 0; i < 40; i++) dev.publishTelemetry(simulatedDevice(9).telemetry(i));
      const got = () => [r1, r2].map((r) => r.store.device('cam-sh')?.received ?? 0);
      await waitFor(() => got()[0]! + got()[1]! === 40, 'the group to receive 40 messages');
      await sleep(200);
      const [a, c] = got();
      assert.equal(a! + c!, 40, 'each message went to exactly one receiver');
      assert.ok(a! > 0 && c! > 0, `both receivers got a share (${a}, ${c})`);
      const seqs = [...r1.store.arrivalOrder('cam-sh'), ...r2.store.arrivalOrder('cam-sh')].sort((x, y) => x - y);
      assert.deepEqual(seqs, Array.from({ length: 40 }, (_, i) => i + 1));
    } finally {
      await dev.stop();
      await r1.close();
      await r2.close();
    }
  });
});
