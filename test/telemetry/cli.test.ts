// The commands: `ttaq broker`, `ttaq receive` (with the dashboard), `ttaq fleet ls|show|cmd`.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { TelemetryClient } from '../../sdk/telemetry/index.ts';
import { simulatedDevice } from '../../sdk/telemetry/simulate.ts';
import { freePort, tempDir } from './helpers.ts';

const TTAQ = new URL('../../tools/ttaq.ts', import.meta.url).pathname;
const tmp = tempDir('ttaq-cli-');
after(() => tmp.cleanup());

async function ttaq(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await promisify(execFile)(process.execPath, ['--import', 'tsx', TTAQ, ...args], { encoding: 'utf8', timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** Spawns a long-running command and resolves with its first JSON line on `stream`. */
function longRunning(args: string[], stream: 'stdout' | 'stderr') {
  const p = spawn(process.execPath, ['--import', 'tsx', TTAQ, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const first = new Promise<Record<string, unknown>>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`ttaq ${args[0]} printed nothing: ${err}`)), 20_000);
    createInterface({ input: p[stream] }).once('line', (l) => { clearTimeout(t); resolve(JSON.parse(l)); });
  });
  const stop = () => new Promise<number | null>((resolve) => { p.once('exit', (c) => resolve(c)); p.kill('SIGTERM'); });
  return { first, stop };
}

test('ttaq broker + receive + fleet ls/show/cmd', { timeout: 90_000 }, async () => {
  const broker = longRunning(['broker', '--port', '0', '--json'], 'stdout');
  const { url } = (await broker.first) as { url: string };
  const db = join(tmp.dir, 'fleet.sqlite');
  const http = await freePort();
  const rx = longRunning(['receive', '--broker', url, '--db', db, '--http', String(http), '--json', '--every', '1', '--client-id', 'cli-rx'], 'stdout');
  const started = await rx.first;
  assert.equal(started.event, 'started');
  assert.equal(started.dashboard, `http://127.0.0.1:${http}/`);
  const dev = new TelemetryClient({ broker: url, device: 'cam-cli', outbox: join(tmp.dir, 'o.sqlite'), reconnectMs: 200 });
  dev.onCommand('set-options', (a) => {
    if (a.lr === 0.5) throw new Error('lr 0.5 diverges');
    return { applied: a };
  });
  try {
    await dev.waitConnected();
    const sim = simulatedDevice(5);
    for (let i = 0; i < 12; i++) dev.publishTelemetry(sim.telemetry(i));
    assert.equal(await dev.flush(5000), true);
    let fleet: { devices: { device: string; received: number }[] } = { devices: [] };
    for (let i = 0; i < 50 && fleet.devices[0]?.received !== 12; i++) {
      fleet = await (await fetch(`http://127.0.0.1:${http}/api/fleet`)).json() as typeof fleet;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(fleet.devices.map((d) => [d.device, d.received]), [['cam-cli', 12]]);

    const ls = await ttaq(['fleet', 'ls', '--db', db]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^DEVICE\s+STATUS/);
    assert.match(ls.stdout, /cam-cli\s+online/);
    const show = await ttaq(['fleet', 'show', 'cam-cli', '--db', db, '--json', '--limit', '5']);
    assert.equal(show.code, 0, show.stderr);
    const s = JSON.parse(show.stdout) as { device: { received: number }; series: { seq: number }[] };
    assert.equal(s.device.received, 12);
    assert.deepEqual(s.series.map((p) => p.seq), [8, 9, 10, 11, 12]);

    const ok = await ttaq(['fleet', 'cmd', 'cam-cli', 'set-options', '{"lr":0.001}', '--broker', url, '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual((JSON.parse(ok.stdout) as { result: unknown }).result, { applied: { lr: 0.001 } });
    const sets = await ttaq(['fleet', 'cmd', 'cam-cli', 'set-options', '{"lr":0.001}', '--set', 'batchSize=4', '--set', 'maxWaitMs=50', '--set', 'every=2', '--set', 'norm=robust', '--broker', url, '--json']);
    assert.equal(sets.code, 0, sets.stderr);
    assert.deepEqual((JSON.parse(sets.stdout) as { result: unknown }).result, { applied: { lr: 0.001, batchSize: 4, maxWaitMs: 50, every: 2, norm: 'robust' } });
    const failed = await ttaq(['fleet', 'cmd', 'cam-cli', 'set-options', '--set', 'lr=0.5', '--broker', url]);
    assert.equal(failed.code, 1, 'the device refused');
    assert.match(failed.stderr, /cam-cli: set-options failed: .*lr 0\.5 diverges/);
    // checked before sending, with the agent's own words: exit 2
    const bad = await ttaq(['fleet', 'cmd', 'cam-cli', 'set-options', '{"lr":-3}', '--broker', url]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /set-options: 'lr': /);
    const unknown = await ttaq(['fleet', 'cmd', 'cam-cli', 'set-options', '--set', 'batchsize=4', '--broker', url]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /'batchsize' cannot change while the agent runs; .*runtime options: .*batchSize, maxWaitMs, every/);
    const misplaced = await ttaq(['fleet', 'cmd', 'cam-cli', 'reset', '--set', 'scope=all', '--broker', url]);
    assert.equal(misplaced.code, 2);
    assert.match(misplaced.stderr, /--set is for 'fleet cmd <device> set-options'/);
    const none = await ttaq(['fleet', 'cmd', 'ghost', 'reset', '--broker', url, '--timeout', '0.5']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no reply from device ghost.*TELEMETRY_TIMEOUT/);
    const usage = await ttaq(['fleet', 'show', 'nobody', '--db', db]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /known: cam-cli/);
    const noDb = await ttaq(['receive', '--broker', url]);
    assert.equal(noDb.code, 2);
    assert.match(noDb.stderr, /--db is required/);
  } finally {
    await dev.stop();
    assert.equal(await rx.stop(), 0, 'receive exits cleanly on SIGTERM');
    await broker.stop();
  }
});
