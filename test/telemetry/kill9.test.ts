// kill -9 of a publisher with messages in its outbox: after a restart they are delivered, exactly
// once and in order, and the crash shows up as the Last Will.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { Outbox, Receiver, startEmbeddedBroker } from '../../sdk/telemetry/index.ts';
import { tempDir, waitFor } from './helpers.ts';

const FIXTURE = new URL('./fixtures/publisher.ts', import.meta.url).pathname;
const tmp = tempDir('ttaq-kill9-');
after(() => tmp.cleanup());

class Child {
  readonly proc: ChildProcess;
  private lines: string[] = [];
  private waiters: ((l: string) => void)[] = [];
  stderr = '';
  constructor(args: string[]) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    createInterface({ input: this.proc.stdout! }).on('line', (l) => {
      const w = this.waiters.shift();
      if (w) w(l);
      else this.lines.push(l);
    });
  }
  next(timeoutMs = 20_000): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`publisher child said nothing for ${timeoutMs} ms; stderr: ${this.stderr}`)), timeoutMs);
      this.waiters.push((x) => { clearTimeout(t); resolve(x); });
    });
  }
  async ask(cmd: string): Promise<string> {
    this.proc.stdin!.write(cmd + '\n');
    return this.next();
  }
  kill9(): Promise<void> {
    return new Promise((resolve) => {
      this.proc.once('exit', () => resolve());
      this.proc.kill('SIGKILL');
    });
  }
}

test('kill -9 with a full outbox: delivered after the restart, exactly once, in order', { timeout: 60_000 }, async () => {
  const broker = await startEmbeddedBroker({ port: 0 });
  const rx = await Receiver.start({ broker: broker.url, db: join(tmp.dir, 'fleet.sqlite'), clientId: 'rx-kill9', reconnectMs: 200 });
  const statuses: string[] = [];
  rx.on('status', (d, s) => { if (d === 'cam-k') statuses.push(s); });
  const outbox = join(tmp.dir, 'outbox.sqlite');
  try {
    // 1. Live: 20 messages, delivered.
    const a = new Child([broker.url, 'cam-k', outbox]);
    assert.equal(await a.next(), 'ready');
    await waitFor(() => statuses.at(-1) === 'online', 'publisher online');
    assert.match(await a.ask('pub 20'), /^ok 20 /);
    assert.equal(await a.ask('flush'), 'flushed 0');
    await waitFor(() => rx.store.device('cam-k')?.received === 20, 'first 20 at the receiver');

    // 2. Broker down: 30 more go to the outbox only; then kill -9.
    await broker.stop();
    await waitFor(() => !rx.isConnected, 'receiver notices the outage');
    assert.equal(await a.ask('pub 30'), 'ok 50 30');
    await a.kill9();
    const box = new Outbox({ path: outbox });
    assert.equal(box.size, 30, 'the 30 unsent messages survived the kill in the outbox');
    assert.equal(box.stats().nextSeq['cam-k'], 51, 'the sequence counter survived too');
    box.close();

    // 3. Broker back, publisher restarted: it replays the 30, then publishes 10 more.
    await broker.start();
    const b = new Child([broker.url, 'cam-k', outbox]);
    assert.equal(await b.next(), 'ready');
    await waitFor(() => rx.store.device('cam-k')?.received === 50, 'the 30 replayed after the restart', 20_000);
    assert.match(await b.ask('pub 10'), /^ok 60 /);
    assert.equal(await b.ask('flush'), 'flushed 0');
    await waitFor(() => rx.store.device('cam-k')?.received === 60, 'all 60 at the receiver');
    const d = rx.store.device('cam-k')!;
    assert.equal(d.maxSeq, 60);
    assert.equal(d.missing, 0);
    assert.deepEqual(rx.store.series('cam-k', 100).map((p) => p.seq), Array.from({ length: 60 }, (_, i) => i + 1), 'stored once each, 1..60');

    // 4. kill -9 while connected: the broker publishes the Last Will.
    await waitFor(() => statuses.at(-1) === 'online', 'restarted publisher online');
    await b.kill9();
    await waitFor(() => statuses.at(-1) === 'offline', 'Last Will after kill -9');
    process.stdout.write(`# kill9: ${JSON.stringify({ received: d.received, duplicates: d.duplicates, outOfOrder: d.outOfOrder, statuses })}\n`);
  } finally {
    await rx.close();
    await broker.close();
  }
});
