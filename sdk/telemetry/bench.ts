// Benchmarks of the telemetry path:
//  - outbox: cost per message of append (write before send) + ack (delete on PUBACK) on a file
//  - store: receiver ingest without MQTT (JSON parse + zod validation + SQLite transaction)
//  - receiver: messages/s ingested end to end (raw QoS 1 publishers -> broker -> Receiver -> SQLite)
//  - agent: TelemetryClient (outbox, in-flight window) -> broker -> Receiver
// Run: node --import tsx sdk/telemetry/bench.ts [--messages 20000] [--broker mqtt://...] [--stall-seconds 10] [--json]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { isTtaqError, TtaqError } from '../errors/index.ts';
import { startEmbeddedBroker } from './broker.ts';
import { TelemetryClient } from './client.ts';
import { Outbox } from './outbox.ts';
import { Receiver } from './receiver.ts';
import { parsePayload, TelemetrySchema } from './schemas.ts';
import { simulatedDevice } from './simulate.ts';
import { FleetStore } from './store.ts';
import { topics } from './topics.ts';

export interface BenchOptions {
  /** Messages for the receiver benchmarks (default 20,000). */
  readonly messages?: number;
  /** Publishing devices in the end-to-end benchmark (default 4). */
  readonly devices?: number;
  /** Broker to use; default: an embedded aedes broker started for the run. */
  readonly broker?: string;
  /**
   * Give up when no message has arrived for this long (default 10 s): a broker that drops what is
   * over its queue limit (Mosquitto's max_queued_messages, 1,000 by default) never delivers the rest.
   */
  readonly stallSeconds?: number;
}

export interface BenchResult {
  readonly outbox: { appendAckUs: number; appendUs: number; appendAckFullSyncUs: number; messages: number };
  /** Batches of 64 per commit (as the receiver does under load) and one commit per message. */
  readonly store: { msgsPerS: number; perMessageCommitMsgsPerS: number; messages: number };
  readonly receiver: { msgsPerS: number; messages: number; devices: number; duplicates: number; broker: string };
  readonly agent: { msgsPerS: number; messages: number };
  readonly payloadBytes: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The persistent session the receiver benchmark leaves on the broker; removed after every run. */
const RX_CLIENT = 'bench-rx';

/**
 * Waits until `count()` reaches `total`, failing once it has not moved for `stallS` seconds; the
 * error says what a broker that drops messages needs.
 */
async function waitFor(what: string, count: () => number, total: number, stallS: number, url: string): Promise<void> {
  let last = count();
  let lastMove = Date.now();
  while (last < total) {
    await sleep(5);
    const now = count();
    if (now !== last) {
      last = now;
      lastMove = Date.now();
    } else if (Date.now() - lastMove > stallS * 1000) {
      throw new TtaqError(
        'TELEMETRY_TIMEOUT',
        `${what}: ${last} of ${total} messages arrived, then none for ${stallS} s. The broker at ${url} most likely dropped the rest: ` +
          `Mosquitto keeps at most max_queued_messages (default 1000) per client and max_inflight_messages in flight. ` +
          `Raise them in mosquitto.conf (max_queued_messages 200000, as examples/fleet-receiver/mosquitto.conf does), ` +
          `or run fewer messages (--messages ${Math.max(100, Math.floor(last * 0.9))}); a slow broker may just need --stall-seconds ${stallS * 3}.`,
        { arrived: last, total },
      );
    }
  }
}

/** Drops the benchmark receiver's persistent session (and its queue) from the broker. */
async function dropSession(url: string, clientId: string): Promise<void> {
  const c = await mqtt.connectAsync(url, { clientId, clean: true, reconnectPeriod: 0, connectTimeout: 5000 }).catch(() => undefined);
  await c?.endAsync().catch(() => undefined);
}

function payloads(device: number, n: number): string[] {
  const sim = simulatedDevice(device + 1);
  const base = sim.telemetry(50);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(JSON.stringify({ ...base, fps: base.fps + (i % 7) * 0.01, seq: i + 1, ts: Date.now() }));
  return out;
}

function benchOutbox(dir: string, n: number) {
  const body = JSON.stringify(simulatedDevice(1).telemetry(50));
  const time = (sync: 'normal' | 'full', ack: boolean, count: number) => {
    const box = new Outbox({ path: join(dir, `outbox-${sync}-${ack}.sqlite`), synchronous: sync });
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) {
      const row = box.append('bench', 'ttaq/v1/bench/telemetry', (seq, ts) => body.slice(0, -1) + `,"seq":${seq},"ts":${ts}}`);
      if (ack) box.ack(row.id);
    }
    const us = Number(process.hrtime.bigint() - t0) / 1000 / count;
    box.close();
    return us;
  };
  return {
    appendAckUs: time('normal', true, n),
    appendUs: time('normal', false, n),
    appendAckFullSyncUs: time('full', true, Math.min(n, 2000)),
    messages: n,
  };
}

function benchStore(dir: string, n: number, batch: number) {
  const store = new FleetStore(join(dir, `store-${batch}.sqlite`));
  const msgs = payloads(0, n).map((p) => Buffer.from(p));
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < msgs.length; i++) {
    if (i % batch === 0) store.begin();
    const m = msgs[i]!;
    const r = parsePayload(TelemetrySchema, m, 'bench');
    if (!r.ok) throw r.error;
    store.ingestTelemetry('bench', r.value, m.toString('utf8'));
    if (i % batch === batch - 1 || i === msgs.length - 1) store.commit();
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  store.close();
  return n / s;
}

/**
 * Receiver ingest rate, isolated from the publishers: the receiver subscribes once (persistent
 * session) and goes away, the devices publish N messages that the broker queues for it, then the
 * receiver comes back and the time to store all N is measured.
 */
async function benchReceiver(dir: string, url: string, n: number, devices: number, stallS: number) {
  const db = join(dir, 'rx.sqlite');
  const first = await Receiver.start({ broker: url, db, clientId: RX_CLIENT });
  await first.close();
  const per = Math.ceil(n / devices);
  const pubs = await Promise.all(
    Array.from({ length: devices }, (_, d) => mqtt.connectAsync(url, { clientId: `bench-pub-${d}`, clean: true })),
  );
  try {
    const data = pubs.map((_, d) => payloads(d, per));
    await Promise.all(pubs.map(async (c, d) => {
      const topic = topics.telemetry(`bench-${d}`);
      for (let i = 0; i < per; i += 500) {
        await Promise.all(data[d]!.slice(i, i + 500).map((p) => c.publishAsync(topic, p, { qos: 1 })));
      }
    }));
  } finally {
    await Promise.all(pubs.map((c) => c.endAsync()));
  }
  const total = per * devices;
  const t0 = process.hrtime.bigint();
  const rx = await Receiver.start({ broker: url, db, clientId: RX_CLIENT });
  try {
    const devs = Array.from({ length: devices }, (_, d) => `bench-${d}`);
    let stored = devs.reduce((a, d) => a + (rx.store.device(d)?.received ?? 0), 0);
    rx.on('stored', () => stored++);
    await waitFor('receiver benchmark', () => stored, total, stallS, url);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return { msgsPerS: total / s, messages: total, devices, duplicates: rx.stats().duplicates };
  } finally {
    await rx.close();
  }
}

async function benchAgent(dir: string, url: string, n: number, stallS: number) {
  const rx = await Receiver.start({ broker: url, db: join(dir, 'agent-rx.sqlite'), clientId: 'bench-agent-rx', persistentSession: false });
  const client = new TelemetryClient({ broker: url, device: 'bench-agent', outbox: join(dir, 'agent-outbox.sqlite'), maxInflight: 256 });
  try {
    await client.waitConnected();
    const body = simulatedDevice(3).telemetry(50);
    let stored = 0;
    rx.on('stored', () => stored++);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      client.publishTelemetry(body);
      if (i % 1000 === 999) await sleep(0); // let acks in, as a real agent between frames would
    }
    await waitFor('agent benchmark', () => stored, n, stallS, url);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return { msgsPerS: n / s, messages: n };
  } finally {
    await client.stop(200);
    await rx.close();
  }
}

export async function benchTelemetry(options: BenchOptions = {}): Promise<BenchResult> {
  const n = options.messages ?? 20_000;
  const devices = options.devices ?? 4;
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-bench-'));
  const broker = options.broker ? null : await startEmbeddedBroker({ port: 0 });
  const url = options.broker ?? broker!.url;
  const stallS = options.stallSeconds ?? 10;
  // and one left by a run that was killed would hand this run its stale queue
  if (options.broker) await dropSession(url, RX_CLIENT);
  try {
    const outbox = benchOutbox(dir, Math.min(n, 20_000));
    const store = { msgsPerS: benchStore(dir, n, 64), perMessageCommitMsgsPerS: benchStore(dir, Math.min(n, 5000), 1), messages: n };
    const receiver = { ...(await benchReceiver(dir, url, n, devices, stallS)), broker: options.broker ? url : 'embedded aedes' };
    const agent = await benchAgent(dir, url, Math.min(n, 10_000), stallS);
    return { outbox, store, receiver, agent, payloadBytes: payloads(0, 1)[0]!.length };
  } finally {
    // A persistent session left on a real broker would keep queueing for a receiver that never returns.
    if (options.broker) await dropSession(url, RX_CLIENT);
    await broker?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { messages: { type: 'string' }, devices: { type: 'string' }, broker: { type: 'string' }, 'stall-seconds': { type: 'string' }, json: { type: 'boolean', default: false } },
  });
  let r: BenchResult;
  try {
    r = await benchTelemetry({
      ...(values.messages ? { messages: Number(values.messages) } : {}),
      ...(values.devices ? { devices: Number(values.devices) } : {}),
      ...(values.broker ? { broker: values.broker } : {}),
      ...(values['stall-seconds'] ? { stallSeconds: Number(values['stall-seconds']) } : {}),
    });
  } catch (e) {
    // A known failure is one paragraph, not a stack trace; anything else is a bug and keeps its trace.
    if (!isTtaqError(e)) throw e;
    process.stderr.write(`telemetry bench: ${e.message}\n`);
    process.exit(1);
  }
  if (values.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  else {
    const f = (x: number) => x.toFixed(0);
    process.stdout.write([
      `payload: ${r.payloadBytes} bytes of JSON per telemetry message`,
      `outbox:   append+ack ${r.outbox.appendAckUs.toFixed(1)} us/msg, append only ${r.outbox.appendUs.toFixed(1)} us/msg, append+ack synchronous=FULL ${r.outbox.appendAckFullSyncUs.toFixed(1)} us/msg (${r.outbox.messages} msgs)`,
      `store:    ${f(r.store.msgsPerS)} msgs/s in commits of 64, ${f(r.store.perMessageCommitMsgsPerS)} msgs/s with a commit per message (parse + validate + SQLite, no MQTT)`,
      `receiver: ${f(r.receiver.msgsPerS)} msgs/s end to end via ${r.receiver.broker}: ${r.receiver.messages} msgs queued by ${r.receiver.devices} devices, drained into SQLite (${r.receiver.duplicates} duplicates)`,
      `agent:    ${f(r.agent.msgsPerS)} msgs/s TelemetryClient -> broker -> receiver (${r.agent.messages} msgs)`,
    ].join('\n') + '\n');
  }
}
