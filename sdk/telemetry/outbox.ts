// The agent's SQLite outbox: every telemetry and event message is written here (with its sequence
// number) before it is sent, and deleted when the broker acknowledges it (PUBACK). After a
// reconnect or a process restart the client replays what is left, oldest first. The outbox is
// bounded by message count, bytes and age; what the bounds push out is counted per reason.
//
// This module owns the outbox's schema and its migrations (PRAGMA user_version). One process per
// outbox file: the counters are kept in memory.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { TtaqError } from '../errors/index.ts';

export type DropReason = 'max_messages' | 'max_bytes' | 'max_age';

export interface OutboxOptions {
  /** SQLite file; ':memory:' for tests. */
  readonly path: string;
  /** Most messages kept; the oldest go first. Default 100,000. */
  readonly maxMessages?: number;
  /** Most payload bytes kept. Default 64 MiB. */
  readonly maxBytes?: number;
  /** Oldest message kept, in ms. Default 7 days. */
  readonly maxAgeMs?: number;
  /**
   * SQLite `synchronous`: 'normal' (default) survives a killed process; 'full' also survives a
   * power cut, at an fsync per message.
   */
  readonly synchronous?: 'normal' | 'full';
  /** Clock, for tests. */
  readonly now?: () => number;
}

export const OUTBOX_DEFAULTS = {
  maxMessages: 100_000,
  maxBytes: 64 * 1024 * 1024,
  maxAgeMs: 7 * 24 * 3600 * 1000,
  synchronous: 'normal',
} as const;

export interface OutboxRow {
  readonly id: number;
  readonly seq: number;
  readonly topic: string;
  readonly payload: string;
}

export interface OutboxStats {
  readonly pending: number;
  readonly bytes: number;
  readonly dropped: Readonly<Record<DropReason, number>>;
  readonly droppedTotal: number;
  /** The sequence number the next message of each device gets. */
  readonly nextSeq: Readonly<Record<string, number>>;
}

/** Each entry moves the schema one version up; never edit a released entry, append a new one. */
const MIGRATIONS: readonly string[] = [
  // 1: outbox, sequence counters, drop counters
  `CREATE TABLE outbox (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     device TEXT NOT NULL,
     seq INTEGER NOT NULL,
     topic TEXT NOT NULL,
     payload TEXT NOT NULL,
     bytes INTEGER NOT NULL,
     created_ms INTEGER NOT NULL
   );
   CREATE TABLE seq (device TEXT PRIMARY KEY, next INTEGER NOT NULL) WITHOUT ROWID;
   CREATE TABLE dropped (reason TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID;`,
];
export const OUTBOX_SCHEMA_VERSION = MIGRATIONS.length;

/** Brings a database to the newest schema; refuses one written by a newer version. */
export function migrateOutbox(db: Database.Database, file: string): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new TtaqError(
      'TELEMETRY_OUTBOX',
      `outbox ${file} has schema version ${current}, newer than this ttaq knows (${MIGRATIONS.length}); upgrade ttaq or move the file away`,
    );
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

export class Outbox {
  private readonly db: Database.Database;
  private readonly opts: Required<Omit<OutboxOptions, 'path'>>;
  private count = 0;
  private bytes = 0;
  private lastAgeCheck = 0;
  private readonly dropped: Record<DropReason, number> = { max_messages: 0, max_bytes: 0, max_age: 0 };
  private readonly seqCache = new Map<string, number>();
  private readonly st;
  private readonly ackManyTx: (ids: readonly number[]) => void;
  private readonly appendTx: (device: string, topic: string, stamp: (seq: number, ts: number) => string) => OutboxRow;

  constructor(options: OutboxOptions) {
    this.opts = {
      maxMessages: options.maxMessages ?? OUTBOX_DEFAULTS.maxMessages,
      maxBytes: options.maxBytes ?? OUTBOX_DEFAULTS.maxBytes,
      maxAgeMs: options.maxAgeMs ?? OUTBOX_DEFAULTS.maxAgeMs,
      synchronous: options.synchronous ?? OUTBOX_DEFAULTS.synchronous,
      now: options.now ?? Date.now,
    };
    for (const k of ['maxMessages', 'maxBytes', 'maxAgeMs'] as const) {
      const v = this.opts[k];
      if (!Number.isFinite(v) || v <= 0) {
        throw new TtaqError('CONFIG_INVALID', `outbox option ${k} must be a positive number, got ${v}`);
      }
    }
    try {
      if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
      this.db = new Database(options.path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${this.opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      migrateOutbox(this.db, options.path);
    } catch (e) {
      if (e instanceof TtaqError) throw e;
      throw new TtaqError('TELEMETRY_OUTBOX', `cannot open outbox ${options.path}: ${(e as Error).message}; check the path and its permissions`, {}, { cause: e });
    }
    const db = this.db;
    this.st = {
      getSeq: db.prepare<[string], { next: number }>('SELECT next FROM seq WHERE device = ?'),
      putSeq: db.prepare('INSERT INTO seq (device, next) VALUES (?, ?) ON CONFLICT(device) DO UPDATE SET next = excluded.next'),
      insert: db.prepare('INSERT INTO outbox (device, seq, topic, payload, bytes, created_ms) VALUES (?, ?, ?, ?, ?, ?)'),
      del: db.prepare<[number], { bytes: number }>('DELETE FROM outbox WHERE id = ? RETURNING bytes'),
      after: db.prepare<[number, number], OutboxRow>('SELECT id, seq, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?'),
      oldest: db.prepare<[number], { id: number; bytes: number }>('SELECT id, bytes FROM outbox ORDER BY id LIMIT ?'),
      delUpTo: db.prepare('DELETE FROM outbox WHERE id <= ?'),
      agedOut: db.prepare<[number], { id: number; bytes: number }>('SELECT id, bytes FROM outbox WHERE created_ms < ? ORDER BY id'),
      totals: db.prepare<[], { n: number; b: number | null }>('SELECT count(*) AS n, sum(bytes) AS b FROM outbox'),
      drops: db.prepare<[], { reason: DropReason; count: number }>('SELECT reason, count FROM dropped'),
      addDrop: db.prepare('INSERT INTO dropped (reason, count) VALUES (?, ?) ON CONFLICT(reason) DO UPDATE SET count = count + excluded.count'),
      allSeq: db.prepare<[], { device: string; next: number }>('SELECT device, next FROM seq'),
    };
    const t = this.st.totals.get()!;
    this.count = t.n;
    this.bytes = t.b ?? 0;
    for (const d of this.st.drops.all()) this.dropped[d.reason] = d.count;

    this.ackManyTx = db.transaction((ids: readonly number[]) => {
      for (const id of ids) this.ack(id);
    });
    this.appendTx = db.transaction((device: string, topic: string, stamp: (seq: number, ts: number) => string) => {
      const seq = this.nextSeqOf(device);
      const ts = this.opts.now();
      const payload = stamp(seq, ts);
      const bytes = Buffer.byteLength(payload);
      const id = Number(this.st.insert.run(device, seq, topic, payload, bytes, ts).lastInsertRowid);
      this.st.putSeq.run(device, seq + 1);
      this.seqCache.set(device, seq + 1);
      this.count++;
      this.bytes += bytes;
      this.enforceBounds(ts);
      return { id, seq, topic, payload };
    });
  }

  private nextSeqOf(device: string): number {
    const cached = this.seqCache.get(device);
    if (cached !== undefined) return cached;
    const next = this.st.getSeq.get(device)?.next ?? 1;
    this.seqCache.set(device, next);
    return next;
  }

  private drop(reason: DropReason, rows: { id: number; bytes: number }[]): void {
    if (rows.length === 0) return;
    this.st.delUpTo.run(rows[rows.length - 1]!.id);
    this.count -= rows.length;
    this.bytes -= rows.reduce((s, r) => s + r.bytes, 0);
    this.dropped[reason] += rows.length;
    this.st.addDrop.run(reason, rows.length);
  }

  private enforceBounds(now: number): void {
    if (now - this.lastAgeCheck >= 1000) {
      this.lastAgeCheck = now;
      this.drop('max_age', this.st.agedOut.all(now - this.opts.maxAgeMs));
    }
    if (this.count > this.opts.maxMessages) this.drop('max_messages', this.st.oldest.all(this.count - this.opts.maxMessages));
    if (this.bytes > this.opts.maxBytes) {
      const over = this.bytes - this.opts.maxBytes;
      const rows: { id: number; bytes: number }[] = [];
      let freed = 0;
      // Walk the oldest rows in chunks until enough bytes are freed.
      for (let chunk = 64; freed < over; chunk *= 2) {
        rows.length = 0;
        freed = 0;
        for (const r of this.st.oldest.all(chunk)) {
          rows.push(r);
          freed += r.bytes;
          if (freed >= over) break;
        }
        if (rows.length < chunk && freed < over) break;
      }
      this.drop('max_bytes', rows);
    }
  }

  /**
   * Stamps `seq` and `ts` into a message (`stamp` builds the payload text from them) and stores it,
   * in one transaction. Returns the stored row, ready to publish.
   */
  append(device: string, topic: string, stamp: (seq: number, ts: number) => string): OutboxRow {
    return this.appendTx(device, topic, stamp);
  }

  /** Stored messages with id > afterId, oldest first. */
  pending(afterId = 0, limit = 256): OutboxRow[] {
    return this.st.after.all(afterId, limit);
  }

  /** Deletes an acknowledged message; a message already pushed out by the bounds is ignored. */
  ack(id: number): void {
    const r = this.st.del.get(id);
    if (r) {
      this.count--;
      this.bytes -= r.bytes;
    }
  }

  /** Deletes several acknowledged messages in one transaction (the client batches PUBACKs). */
  ackMany(ids: readonly number[]): void {
    if (ids.length === 1) return this.ack(ids[0]!);
    this.ackManyTx(ids);
  }

  /** Runs the age bound now (append runs it at most once a second). */
  prune(): void {
    this.lastAgeCheck = 0;
    this.enforceBounds(this.opts.now());
  }

  stats(): OutboxStats {
    const nextSeq: Record<string, number> = {};
    for (const r of this.st.allSeq.all()) nextSeq[r.device] = r.next;
    const dropped = { ...this.dropped };
    return { pending: this.count, bytes: this.bytes, dropped, droppedTotal: dropped.max_age + dropped.max_bytes + dropped.max_messages, nextSeq };
  }

  get size(): number {
    return this.count;
  }

  get droppedTotal(): number {
    return this.dropped.max_age + this.dropped.max_bytes + this.dropped.max_messages;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
