// The receiver's SQLite store: per-device time series of telemetry, events, the command log and a
// device table with the status and delivery counters. (device, seq) is unique, so a message
// delivered twice (QoS 1 re-sends, outbox replays) is stored once; rowid keeps the arrival order.
//
// This module owns the fleet database's schema and its migrations (PRAGMA user_version).
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { TtaqError } from '../errors/index.ts';
import type { Status, Telemetry, TelemetryEvent } from './schemas.ts';

export interface DeviceRow {
  readonly device: string;
  readonly firstSeenMs: number;
  readonly lastSeenMs: number;
  readonly status: string | null;
  readonly statusTs: number | null;
  readonly session: string | null;
  readonly agent: string | null;
  /** Highest sequence number stored. */
  readonly maxSeq: number;
  /** Distinct messages stored (telemetry + events). */
  readonly received: number;
  /** maxSeq - received: never delivered (dropped by the device's outbox bounds, or lost). */
  readonly missing: number;
  readonly duplicates: number;
  /** Stored messages that arrived after one with a higher seq. */
  readonly outOfOrder: number;
  readonly invalid: number;
  readonly provider: string | null;
  readonly modelSha256: string | null;
  /** The newest telemetry message (parsed), if any. */
  readonly last: Telemetry | null;
}

export interface TelemetryPoint {
  readonly seq: number;
  readonly ts: number;
  readonly fps: number;
  readonly latencyP50Ms: number;
  readonly latencyP95Ms: number;
  readonly droppedFrames: number;
  readonly meanEntropy: number;
  readonly meanConfidence: number;
  readonly adaptLoss: number | null;
  readonly adaptSteps: number;
  readonly resets: number;
  readonly driftScore: number;
  readonly memoryMb: number;
}

export interface EventRow {
  readonly seq: number;
  readonly ts: number;
  readonly type: string;
  readonly event: TelemetryEvent;
}

export interface CommandLogRow {
  readonly recvMs: number;
  readonly name: string;
  readonly kind: 'command' | 'reply';
  readonly cmdId: string | null;
  readonly ok: boolean | null;
  readonly payload: string;
}

export type IngestResult = 'new' | 'duplicate';

const MIGRATIONS: readonly string[] = [
  // 1: devices, messages (telemetry + events, one sequence), command log
  `CREATE TABLE devices (
     device TEXT PRIMARY KEY,
     first_seen_ms INTEGER NOT NULL,
     last_seen_ms INTEGER NOT NULL,
     status TEXT, status_ts INTEGER, session TEXT, agent TEXT,
     max_seq INTEGER NOT NULL DEFAULT 0,
     received INTEGER NOT NULL DEFAULT 0,
     duplicates INTEGER NOT NULL DEFAULT 0,
     out_of_order INTEGER NOT NULL DEFAULT 0,
     invalid INTEGER NOT NULL DEFAULT 0,
     provider TEXT, model_sha256 TEXT, last_telemetry TEXT
   ) WITHOUT ROWID;
   CREATE TABLE messages (
     id INTEGER PRIMARY KEY,
     device TEXT NOT NULL,
     seq INTEGER NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('telemetry', 'event')),
     ts INTEGER NOT NULL,
     recv_ms INTEGER NOT NULL,
     type TEXT,
     fps REAL, latency_p50 REAL, latency_p95 REAL, dropped_frames INTEGER,
     entropy REAL, confidence REAL, adapt_loss REAL, adapt_steps INTEGER, resets INTEGER,
     drift REAL, memory_mb REAL,
     payload TEXT NOT NULL,
     UNIQUE (device, seq)
   );
   CREATE INDEX messages_kind ON messages (device, kind, seq);
   CREATE TABLE commands (
     id INTEGER PRIMARY KEY,
     device TEXT NOT NULL,
     name TEXT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('command', 'reply')),
     cmd_id TEXT,
     ok INTEGER,
     recv_ms INTEGER NOT NULL,
     payload TEXT NOT NULL
   );
   CREATE INDEX commands_device ON commands (device, id);`,
];
export const STORE_SCHEMA_VERSION = MIGRATIONS.length;

export interface FleetStoreOptions {
  /** 'normal' (default): a crash of the receiver loses nothing acknowledged; 'full' adds power cuts. */
  readonly synchronous?: 'normal' | 'full';
  /** Open read-only (the fleet CLI and a second dashboard). */
  readonly readonly?: boolean;
}

export class FleetStore {
  readonly db: Database.Database;
  private readonly st;
  /** Devices known to have a row (saves an upsert per message). */
  private readonly known = new Set<string>();
  private readonly ingestTx: (device: string, kind: 'telemetry' | 'event', msg: Telemetry | TelemetryEvent, payload: string, recvMs: number) => IngestResult;

  constructor(readonly path: string, options: FleetStoreOptions = {}) {
    try {
      // a new database gets its folders, as the agent's own store does (device/store.ts)
      if (!options.readonly && path !== ':memory:') {
        try {
          mkdirSync(dirname(path), { recursive: true });
        } catch (e) {
          throw new TtaqError('TELEMETRY_STORE', `cannot create the folder of fleet database ${path} (${(e as Error).message}); choose a path in a writable folder`, {}, { cause: e });
        }
      }
      if (path !== ':memory:' && existsSync(path) && statSync(path).isDirectory()) {
        throw new TtaqError('TELEMETRY_STORE', `fleet database ${path} is a folder; give a file name inside it, e.g. ${join(path, 'fleet.sqlite')}`);
      }
      this.db = new Database(path, options.readonly ? { readonly: true, fileMustExist: true } : {});
      if (!options.readonly) {
        this.db.pragma('journal_mode = WAL');
        this.db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      }
      this.db.pragma('busy_timeout = 5000');
      const v = this.db.pragma('user_version', { simple: true }) as number;
      if (v > MIGRATIONS.length) {
        throw new TtaqError('TELEMETRY_STORE', `fleet database ${path} has schema version ${v}, newer than this ttaq knows (${MIGRATIONS.length}); upgrade ttaq`);
      }
      if (options.readonly && v < MIGRATIONS.length) {
        throw new TtaqError('TELEMETRY_STORE', `fleet database ${path} has schema version ${v}; run 'ttaq receive --db ${path}' once to migrate it`);
      }
      for (let i = v; i < MIGRATIONS.length; i++) {
        this.db.transaction(() => {
          this.db.exec(MIGRATIONS[i]!);
          this.db.pragma(`user_version = ${i + 1}`);
        })();
      }
    } catch (e) {
      if (e instanceof TtaqError) throw e;
      const hint = options.readonly ? "check the path (it is the file 'ttaq receive --db' writes)" : 'check that the path is a SQLite file this user can write';
      throw new TtaqError('TELEMETRY_STORE', `cannot open fleet database ${path}: ${(e as Error).message}; ${hint}`, {}, { cause: e });
    }
    const db = this.db;
    const ro = options.readonly ?? false;
    this.st = {
      touch: ro ? null : db.prepare(
        `INSERT INTO devices (device, first_seen_ms, last_seen_ms) VALUES (?, ?, ?)
         ON CONFLICT(device) DO UPDATE SET last_seen_ms = excluded.last_seen_ms`,
      ),
      insert: ro ? null : db.prepare(
        `INSERT OR IGNORE INTO messages (device, seq, kind, ts, recv_ms, type, fps, latency_p50, latency_p95, dropped_frames,
           entropy, confidence, adapt_loss, adapt_steps, resets, drift, memory_mb, payload)
         VALUES (@device, @seq, @kind, @ts, @recv, @type, @fps, @p50, @p95, @dropped, @entropy, @confidence, @loss, @steps, @resets, @drift, @mem, @payload)`,
      ),
      counted: ro ? null : db.prepare(
        `UPDATE devices SET received = received + 1, last_seen_ms = @recv,
           out_of_order = out_of_order + (CASE WHEN @seq < max_seq THEN 1 ELSE 0 END),
           last_telemetry = CASE WHEN @payload IS NOT NULL AND @seq >= max_seq THEN @payload ELSE last_telemetry END,
           provider = CASE WHEN @payload IS NOT NULL AND @seq >= max_seq THEN @provider ELSE provider END,
           model_sha256 = CASE WHEN @payload IS NOT NULL AND @seq >= max_seq THEN @sha ELSE model_sha256 END,
           max_seq = max(max_seq, @seq) WHERE device = @device`,
      ),
      dup: ro ? null : db.prepare('UPDATE devices SET duplicates = duplicates + 1, last_seen_ms = ? WHERE device = ?'),
      invalid: ro ? null : db.prepare('UPDATE devices SET invalid = invalid + 1 WHERE device = ?'),
      status: ro ? null : db.prepare('UPDATE devices SET status = ?, status_ts = ?, session = ?, agent = ? WHERE device = ?'),
      command: ro ? null : db.prepare('INSERT INTO commands (device, name, kind, cmd_id, ok, recv_ms, payload) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      devices: db.prepare('SELECT * FROM devices ORDER BY device'),
      device: db.prepare('SELECT * FROM devices WHERE device = ?'),
      series: db.prepare(
        `SELECT * FROM (SELECT seq, ts, fps, latency_p50, latency_p95, dropped_frames, entropy, confidence, adapt_loss,
           adapt_steps, resets, drift, memory_mb FROM messages WHERE device = ? AND kind = 'telemetry' ORDER BY seq DESC LIMIT ?)
         ORDER BY seq`,
      ),
      events: db.prepare(`SELECT seq, ts, type, payload FROM messages WHERE device = ? AND kind = 'event' ORDER BY seq DESC LIMIT ?`),
      commands: db.prepare('SELECT recv_ms, name, kind, cmd_id, ok, payload FROM commands WHERE device = ? ORDER BY id DESC LIMIT ?'),
      arrival: db.prepare<[string], { seq: number }>('SELECT seq FROM messages WHERE device = ? ORDER BY id'),
      counts: db.prepare<[string], { kind: string; n: number }>('SELECT kind, count(*) AS n FROM messages WHERE device = ? GROUP BY kind'),
    };
    this.ingestTx = db.transaction((device, kind, msg, payload, recvMs): IngestResult => {
      if (!this.known.has(device)) {
        this.st.touch!.run(device, recvMs, recvMs);
        this.known.add(device);
      }
      const t = kind === 'telemetry' ? (msg as Telemetry) : null;
      const res = this.st.insert!.run({
        device,
        seq: msg.seq,
        kind,
        ts: msg.ts,
        recv: recvMs,
        type: t ? null : (msg as TelemetryEvent).type,
        fps: t?.fps ?? null,
        p50: t?.latencyP50Ms ?? null,
        p95: t?.latencyP95Ms ?? null,
        dropped: t?.droppedFrames ?? null,
        entropy: t?.meanEntropy ?? null,
        confidence: t?.meanConfidence ?? null,
        loss: t?.adaptLoss ?? null,
        steps: t?.adaptSteps ?? null,
        resets: t?.resets ?? null,
        drift: t?.driftScore ?? null,
        mem: t?.memoryMb ?? null,
        payload,
      });
      if (res.changes === 0) {
        this.st.dup!.run(recvMs, device);
        return 'duplicate';
      }
      this.st.counted!.run({ device, seq: msg.seq, recv: recvMs, payload: t ? payload : null, provider: t?.provider ?? null, sha: t?.modelSha256 ?? null });
      return 'new';
    });
  }

  /**
   * Group commit: between begin() and commit() every ingest joins one transaction (each ingest is a
   * savepoint inside it). The receiver acknowledges a batch only after its commit.
   */
  begin(): void {
    this.writable();
    if (!this.db.inTransaction) this.db.exec('BEGIN');
  }

  commit(): void {
    if (this.db.inTransaction) this.db.exec('COMMIT');
  }

  rollback(): void {
    if (this.db.inTransaction) this.db.exec('ROLLBACK');
    this.known.clear();
  }

  private writable(): void {
    if (!this.st.touch) throw new TtaqError('TELEMETRY_STORE', `fleet database ${this.path} is open read-only`);
  }

  /** Stores one validated telemetry message; 'duplicate' when (device, seq) is already stored. */
  ingestTelemetry(device: string, msg: Telemetry, payload: string, recvMs = Date.now()): IngestResult {
    this.writable();
    return this.ingestTx(device, 'telemetry', msg, payload, recvMs);
  }

  ingestEvent(device: string, msg: TelemetryEvent, payload: string, recvMs = Date.now()): IngestResult {
    this.writable();
    return this.ingestTx(device, 'event', msg, payload, recvMs);
  }

  setStatus(device: string, s: Status, recvMs = Date.now()): void {
    this.writable();
    this.db.transaction(() => {
      this.st.touch!.run(device, recvMs, recvMs);
      this.st.status!.run(s.state, s.ts, s.session ?? null, s.agent ?? null, device);
    })();
  }

  recordInvalid(device: string, recvMs = Date.now()): void {
    this.writable();
    this.st.touch!.run(device, recvMs, recvMs);
    this.st.invalid!.run(device);
  }

  recordCommand(device: string, name: string, kind: 'command' | 'reply', cmdId: string | null, okFlag: boolean | null, payload: string, recvMs = Date.now()): void {
    this.writable();
    this.st.command!.run(device, name, kind, cmdId, okFlag === null ? null : okFlag ? 1 : 0, recvMs, payload);
  }

  private toDevice(r: Record<string, unknown>): DeviceRow {
    const maxSeq = r.max_seq as number;
    const received = r.received as number;
    return {
      device: r.device as string,
      firstSeenMs: r.first_seen_ms as number,
      lastSeenMs: r.last_seen_ms as number,
      status: (r.status as string | null) ?? null,
      statusTs: (r.status_ts as number | null) ?? null,
      session: (r.session as string | null) ?? null,
      agent: (r.agent as string | null) ?? null,
      maxSeq,
      received,
      missing: Math.max(0, maxSeq - received),
      duplicates: r.duplicates as number,
      outOfOrder: r.out_of_order as number,
      invalid: r.invalid as number,
      provider: (r.provider as string | null) ?? null,
      modelSha256: (r.model_sha256 as string | null) ?? null,
      last: r.last_telemetry ? (JSON.parse(r.last_telemetry as string) as Telemetry) : null,
    };
  }

  devices(): DeviceRow[] {
    return (this.st.devices.all() as Record<string, unknown>[]).map((r) => this.toDevice(r));
  }

  device(device: string): DeviceRow | undefined {
    const r = this.st.device.get(device) as Record<string, unknown> | undefined;
    return r ? this.toDevice(r) : undefined;
  }

  /** The newest `limit` telemetry points of a device, oldest first. */
  series(device: string, limit = 500): TelemetryPoint[] {
    return (this.st.series.all(device, limit) as Record<string, number>[]).map((r) => ({
      seq: r.seq!,
      ts: r.ts!,
      fps: r.fps!,
      latencyP50Ms: r.latency_p50!,
      latencyP95Ms: r.latency_p95!,
      droppedFrames: r.dropped_frames!,
      meanEntropy: r.entropy!,
      meanConfidence: r.confidence!,
      adaptLoss: r.adapt_loss ?? null,
      adaptSteps: r.adapt_steps!,
      resets: r.resets!,
      driftScore: r.drift!,
      memoryMb: r.memory_mb!,
    }));
  }

  /** The newest `limit` events, newest first. */
  events(device: string, limit = 50): EventRow[] {
    return (this.st.events.all(device, limit) as { seq: number; ts: number; type: string; payload: string }[]).map((r) => ({
      seq: r.seq,
      ts: r.ts,
      type: r.type,
      event: JSON.parse(r.payload) as TelemetryEvent,
    }));
  }

  commands(device: string, limit = 50): CommandLogRow[] {
    return (this.st.commands.all(device, limit) as { recv_ms: number; name: string; kind: 'command' | 'reply'; cmd_id: string | null; ok: number | null; payload: string }[]).map((r) => ({
      recvMs: r.recv_ms,
      name: r.name,
      kind: r.kind,
      cmdId: r.cmd_id,
      ok: r.ok === null ? null : r.ok === 1,
      payload: r.payload,
    }));
  }

  /** Sequence numbers of a device in the order they were first stored. */
  arrivalOrder(device: string): number[] {
    return this.st.arrival.all(device).map((r) => r.seq);
  }

  counts(device: string): { telemetry: number; event: number } {
    const c = { telemetry: 0, event: 0 };
    for (const r of this.st.counts.all(device)) c[r.kind as 'telemetry' | 'event'] = r.n;
    return c;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
