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
import { Receiver, startDashboard, startEmbeddedBroker, TelemetryClient, type Dashboard, type EmbeddedBroker } from '../../sdk/telemetry/index.ts';
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
const parts: { broker?: EmbeddedBroker; rx?: Receiver; dash?: Dashboard; clients: TelemetryClient[] } = { clients: [] };
const chromium = new AbortController();

// Whatever point the run has reached, the same teardown: clients (stop() is a no-op for one already
// stopped or crashed), dashboard, receiver, broker, then the temporary folder.
let closing: Promise<void> | undefined;
function closeAll(): Promise<void> {
  closing ??= (async () => {
    chromium.abort();
    for (const c of parts.clients) await c.stop(500).catch(() => undefined);
    await parts.dash?.close().catch(() => undefined);
    await parts.rx?.close().catch(() => undefined);
    await parts.broker?.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  })();
  return closing;
}

// Ctrl-C or SIGTERM (a service manager, a test) stops the demo wherever it is and leaves nothing in
// /tmp; while serving, it ends the serving and the run finishes as usual.
let stopServing: (() => void) | undefined;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopServing) return stopServing();
    process.stderr.write(`${sig}: stopping\n`);
    void closeAll().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}

const broker = (parts.broker = await startEmbeddedBroker({ port: 0 }));
const rx = (parts.rx = await Receiver.start({ broker: broker.url, db: join(dir, 'fleet.sqlite'), clientId: 'demo-rx' }));
const dash = (parts.dash = await startDashboard({ store: rx.store, port: Number(values.http), stats: () => rx.stats() }));
process.stderr.write(`broker ${broker.url}, dashboard ${dash.url}, data in ${dir}\n`);

const n = Number(values.devices);
const steps = Number(values.steps);
const clients = (parts.clients = Array.from({ length: n }, (_, i) =>
  new TelemetryClient({ broker: broker.url, device: `cam-${String(i + 1).padStart(2, '0')}`, outbox: join(dir, `outbox-${i}.sqlite`), agent: 'demo/0.1' })));
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
  ], { timeout: 60_000, signal: chromium.signal });
  process.stderr.write(`screenshot: ${values.screenshot}\n`);
}
if (values.serve) {
  process.stderr.write('serving; Ctrl-C stops\n');
  await new Promise<void>((r) => (stopServing = r));
}
await closeAll();
