// The dashboard in headless Chromium: the page loads, fetches the API and draws every chart with
// the stored points, and the fleet table lists each device. Skipped when chromium is absent.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FleetStore, startDashboard, type Telemetry } from '../../sdk/telemetry/index.ts';
import { simulatedDevice } from '../../sdk/telemetry/simulate.ts';
import { tempDir } from './helpers.ts';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));
const SKIP = CHROMIUM ? false : 'chromium not installed (apt-get install -y chromium)';

// Asynchronous: the dashboard answers from this same process while the browser runs.
async function chromium(userDir: string, args: string[]): Promise<string> {
  const r = await promisify(execFile)(CHROMIUM!, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', `--user-data-dir=${userDir}`, '--virtual-time-budget=4000', ...args,
  ], { encoding: 'utf8', timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
  return r.stdout;
}

test('dashboard in headless Chromium: charts drawn with data, fleet table filled', { skip: SKIP, timeout: 90_000 }, async () => {
  const tmp = tempDir('ttaq-chromium-');
  const store = new FleetStore(join(tmp.dir, 'fleet.sqlite'));
  const N = 60;
  for (const [k, dev] of ['cam-01', 'cam-02', 'cam-03'].entries()) {
    const sim = simulatedDevice(k + 1, 10, 25);
    for (let i = 1; i <= N; i++) {
      const t = { ...sim.telemetry(i), paused: false, seq: i, ts: Date.now() - (N - i) * 10_000 } as Telemetry;
      store.ingestTelemetry(dev, t, JSON.stringify(t));
    }
    store.setStatus(dev, { state: (['online', 'offline', 'stopped'] as const)[k]!, ts: Date.now() });
  }
  const ev = { type: 'shift_detected' as const, score: 2.9, threshold: 1.5, message: 'drift score above threshold', seq: N + 1, ts: Date.now() };
  store.ingestEvent('cam-02', ev, JSON.stringify(ev));
  const dash = await startDashboard({ store, port: 0 });
  try {
    const dom = await chromium(join(tmp.dir, 'profile'), ['--dump-dom', `${dash.url}?device=cam-02`]);
    const charts = Object.fromEntries([...dom.matchAll(/data-chart="([^"]+)" data-points="(\d+)"/g)].map((m) => [m[1], Number(m[2])]));
    assert.deepEqual(charts, {
      'Frames per second': N, 'Mean prediction entropy': N, 'Adaptation loss': N, 'Drift score': N, histogram: 10,
    }, 'every chart drawn with all points');
    assert.equal([...dom.matchAll(/<tr class="device[^"]*" data-device="(cam-0\d)"/g)].length, 3, 'three rows in the fleet table');
    assert.match(dom, /Device cam-02/);
    assert.match(dom, /shift_detected/);
    assert.match(dom, /<path d="M[\d.]+ [\d.]+(L[\d.]+ [\d.]+){59}"/, 'a line with 60 vertices');
    const png = process.env.TTAQ_DASHBOARD_PNG ?? join(tmp.dir, 'dashboard.png');
    await chromium(join(tmp.dir, 'profile'), ['--window-size=1400,1000', '--hide-scrollbars', `--screenshot=${png}`, `${dash.url}?device=cam-02`]);
    const bytes = readFileSync(png);
    assert.deepEqual([...bytes.subarray(1, 4)].map((c) => String.fromCharCode(c)).join(''), 'PNG');
    assert.ok(bytes.length > 20_000, `a real screenshot, not a blank page (${bytes.length} bytes)`);
  } finally {
    await dash.close();
    store.close();
    tmp.cleanup();
  }
});
