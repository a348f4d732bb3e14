// A fleet in one process: the embedded broker, a receiver with its dashboard, and simulated
// devices publishing through TelemetryClient (outbox included). One device crashes (Last Will),
// one stops gracefully, the rest stay online. Optionally takes a screenshot in headless Chromium.
//
//   node --import tsx examples/fleet-receiver/demo.ts [--devices 4] [--steps 90] [--http 8080]
//        [--screenshot docs/images/dashboard.png] [--serve]
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify, parseArgs } from 'node:util';
import { Receiver, startDashboard, startEmbeddedBroker, TelemetryClient } from '../../sdk/telemetry/index.ts';
import { simulatedDevice } from '../../sdk/telemetry/simulate.ts';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '4' },
    steps: { type: 'string', default: '90' },
    http: { type: 'string', default: '0' },
    screenshot: { type: 'string' },
    device: { type: 'string', default: 'cam-02' },
    serve: { type: 'boolean', default: false },
  },
});
const dir = mkdtempSync(join(tmpdir(), 'ttaq-demo-'));
const broker = await startEmbeddedBroker({ port: 0 });
const rx = await Receiver.start({ broker: broker.url, db: join(dir, 'fleet.sqlite'), clientId: 'demo-rx' });
const dash = await startDashboard({ store: rx.store, port: Number(values.http), stats: () => rx.stats() });
process.stderr.write(`broker ${broker.url}, dashboard ${dash.url}\n`);

const n = Number(values.devices);
const steps = Number(values.steps);
const clients = Array.from({ length: n }, (_, i) =>
  new TelemetryClient({ broker: broker.url, device: `cam-${String(i + 1).padStart(2, '0')}`, outbox: join(dir, `outbox-${i}.sqlite`), agent: 'demo/0.1' }));
await Promise.all(clients.map((c) => c.waitConnected()));
const sims = clients.map((_, i) => simulatedDevice(i + 1, 10, 30 + 8 * i));
for (let step = 0; step < steps; step++) {
  clients.forEach((c, i) => {
    c.publishTelemetry(sims[i]!.telemetry(step));
    const ev = sims[i]!.event(step);
    if (ev) c.publishEvent(ev);
  });
  await new Promise((r) => setTimeout(r, 5));
}
await Promise.all(clients.map((c) => c.flush(10_000)));
if (n >= 3) {
  clients[n - 1]!.abort(); // crash: the broker publishes the Last Will (offline)
  await clients[n - 2]!.stop(); // graceful: stopped
}
await new Promise((r) => setTimeout(r, 500));
process.stderr.write(`receiver: ${JSON.stringify(rx.stats())}\n`);

if (values.screenshot) {
  const profile = join(dir, 'chromium');
  await promisify(execFile)('chromium', [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', `--user-data-dir=${profile}`, '--virtual-time-budget=4000',
    '--window-size=1400,1000', '--hide-scrollbars', `--screenshot=${values.screenshot}`, `${dash.url}?device=${values.device}`,
  ], { timeout: 60_000 });
  process.stderr.write(`screenshot: ${values.screenshot}\n`);
}
if (values.serve) {
  process.stderr.write('serving; Ctrl-C stops\n');
  await new Promise((r) => process.once('SIGINT', r));
}
for (const c of clients.slice(0, n >= 3 ? n - 2 : n)) await c.stop();
await dash.close();
await rx.close();
await broker.close();
rmSync(dir, { recursive: true, force: true });
