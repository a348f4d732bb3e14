// The agent's SQLite database, and the one module that knows its schema. WAL mode (readers never
// block the writer; a killed process loses at most the transaction in flight), prepared statements
// created once, transactions around batches, migrations keyed by PRAGMA user_version.
//
// Tables: runs (one row per agent start), events (the run log), checkpoints (adaptation state
// blobs with their step counter and model SHA-256), predictions (optional, bounded).
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { TtaqError } from '../sdk/errors/index.ts';
import { processAlive } from '../sdk/files/index.ts';

/** Each entry moves the schema from version i to i + 1. Append only; never edit a shipped one. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE runs (
     id INTEGER PRIMARY KEY,
     started_at INTEGER NOT NULL,
     ended_at INTEGER,
     end_reason TEXT,
     pid INTEGER NOT NULL,
     host TEXT NOT NULL,
     config TEXT NOT NULL
   );
   CREATE TABLE events (
     id INTEGER PRIMARY KEY,
     run_id INTEGER NOT NULL REFERENCES runs(id),
     at INTEGER NOT NULL,
     level TEXT NOT NULL,
     kind TEXT NOT NULL,
     message TEXT NOT NULL,
     data TEXT
   );
   CREATE INDEX events_run ON events(run_id, id);
   CREATE TABLE checkpoints (
     id INTEGER PRIMARY KEY,
     run_id INTEGER NOT NULL REFERENCES runs(id),
     created_at INTEGER NOT NULL,
     model_sha256 TEXT NOT NULL,
     model_name TEXT NOT NULL,
     method TEXT NOT NULL,
     step INTEGER NOT NULL,
     reason TEXT NOT NULL,
     state BLOB NOT NULL
   );
   CREATE INDEX checkpoints_model ON checkpoints(model_sha256, id);
   CREATE TABLE predictions (
     id INTEGER PRIMARY KEY,
     run_id INTEGER NOT NULL,
     at INTEGER NOT NULL,
     seq INTEGER NOT NULL,
     model_sha256 TEXT NOT NULL,
     label INTEGER NOT NULL,
     confidence REAL,
     entropy REAL NOT NULL,
     adapted INTEGER NOT NULL
   );`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

export interface Checkpoint {
  readonly id: number;
  readonly runId: number;
  readonly createdAt: number;
  readonly modelSha256: string;
  readonly modelName: string;
  readonly method: string;
  readonly step: number;
  /** Why it was written: `periodic`, `shutdown`, `reload`, `manual`. */
  readonly reason: string;
  readonly state: Uint8Array;
}

export interface PredictionRow {
  readonly at: number;
  readonly seq: number;
  readonly label: number;
  readonly confidence?: number | undefined;
  readonly entropy: number;
  readonly adapted: boolean;
}

export interface RunEvent {
  readonly id: number;
  readonly runId: number;
  readonly at: number;
  readonly level: string;
  readonly kind: string;
  readonly message: string;
  readonly data?: unknown;
}

type Row = Record<string, unknown>;

export class AgentStore {
  readonly db: Database.Database;
  private readonly st: Record<string, Database.Statement>;
  private readonly insertPredictions: (runId: number, sha: string, rows: readonly PredictionRow[], maxRows: number) => void;

  private constructor(db: Database.Database, readonly path: string) {
    this.db = db;
    this.st = {
      beginRun: db.prepare('INSERT INTO runs (started_at, pid, host, config) VALUES (?, ?, ?, ?)'),
      endRun: db.prepare('UPDATE runs SET ended_at = ?, end_reason = ? WHERE id = ?'),
      event: db.prepare('INSERT INTO events (run_id, at, level, kind, message, data) VALUES (?, ?, ?, ?, ?, ?)'),
      events: db.prepare('SELECT * FROM events WHERE (? IS NULL OR run_id = ?) ORDER BY id DESC LIMIT ?'),
      saveCkpt: db.prepare('INSERT INTO checkpoints (run_id, created_at, model_sha256, model_name, method, step, reason, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      pruneCkpt: db.prepare(`DELETE FROM checkpoints WHERE model_sha256 = @sha AND method = @method AND id NOT IN
        (SELECT id FROM checkpoints WHERE model_sha256 = @sha AND method = @method ORDER BY id DESC LIMIT @keep)`),
      latestCkpt: db.prepare('SELECT * FROM checkpoints ORDER BY id DESC LIMIT 1'),
      latestCkptFor: db.prepare('SELECT * FROM checkpoints WHERE model_sha256 = @sha AND (@method IS NULL OR method = @method) ORDER BY id DESC LIMIT 1'),
      openRuns: db.prepare('SELECT id, pid, started_at FROM runs WHERE ended_at IS NULL AND host = ? ORDER BY id DESC'),
      countCkpt: db.prepare('SELECT COUNT(*) AS n FROM checkpoints'),
      deleteCkptFor: db.prepare('DELETE FROM checkpoints WHERE model_sha256 = ?'),
      insPred: db.prepare('INSERT INTO predictions (run_id, at, seq, model_sha256, label, confidence, entropy, adapted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      maxPred: db.prepare('SELECT MAX(id) AS id FROM predictions'),
      prunePred: db.prepare('DELETE FROM predictions WHERE id <= ?'),
      countPred: db.prepare('SELECT COUNT(*) AS n FROM predictions'),
      runs: db.prepare('SELECT * FROM runs ORDER BY id DESC LIMIT ?'),
    };
    this.insertPredictions = db.transaction((runId: number, sha: string, rows: readonly PredictionRow[], maxRows: number) => {
      for (const r of rows) {
        this.st.insPred!.run(runId, r.at, r.seq, sha, r.label, r.confidence ?? null, r.entropy, r.adapted ? 1 : 0);
      }
      const max = (this.st.maxPred!.get() as { id: number | null }).id ?? 0;
      // Ids grow by one per row, so everything at or below max - maxRows is beyond the bound.
      if (max > maxRows) this.st.prunePred!.run(max - maxRows);
    });
  }

  /** Opens (creating folders and schema as needed) the database at `path`. */
  static open(path: string): AgentStore {
    let db: Database.Database;
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      db = new Database(path);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 2000');
    } catch (e) {
      throw new TtaqError('CONFIG_INVALID', `cannot open the agent database '${path}': ${(e as Error).message}; set storage.path to a writable file`, { path }, { cause: e });
    }
    try {
      migrate(db, path);
      return new AgentStore(db, path);
    } catch (e) {
      db.close();
      if (e instanceof TtaqError) throw e;
      // a SQLite file of something else (the telemetry outbox beside it is the usual mix-up), or
      // one locked by another program
      throw new TtaqError('CONFIG_INVALID', `'${path}' cannot be used as the agent database: ${(e as Error).message}; it is another program's SQLite file or held by one: set storage.path to the agent's own file (a new path starts a new one)`, { path }, { cause: e });
    }
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  /**
   * Records a new run, refusing when another live agent on this host has an unfinished run here:
   * two agents on one database would restore each other's adaptation state and prune each other's
   * checkpoints. A run left unfinished by a killed agent (its pid gone) does not count. Checked and
   * recorded in one immediate transaction, so two agents starting together cannot both pass.
   */
  beginRun(config: unknown, host: string): number {
    const tx = this.db.transaction(() => {
      for (const r of this.st.openRuns!.all(host) as { id: number; pid: number; started_at: number }[]) {
        if (!processAlive(r.pid)) continue;
        throw new TtaqError('CONFIG_INVALID', `agent database '${this.path}' is in use by another agent (pid ${r.pid}, run ${r.id}, started ${new Date(r.started_at).toISOString()}); stop that agent, or give this one its own storage.path`, { path: this.path, pid: r.pid });
      }
      return Number(this.st.beginRun!.run(Date.now(), process.pid, host, JSON.stringify(config)).lastInsertRowid);
    });
    try {
      return tx.immediate();
    } catch (e) {
      if (e instanceof TtaqError) throw e;
      throw new TtaqError('CONFIG_INVALID', `cannot record a run in the agent database '${this.path}': ${(e as Error).message}; another program holds it (a database browser with an open write?): close it, or set storage.path to another file`, { path: this.path }, { cause: e });
    }
  }

  endRun(runId: number, reason: string): void {
    this.st.endRun!.run(Date.now(), reason, runId);
  }

  event(runId: number, level: string, kind: string, message: string, data?: unknown): void {
    this.st.event!.run(runId, Date.now(), level, kind, message, data === undefined ? null : JSON.stringify(data));
  }

  events(limit = 100, runId?: number): RunEvent[] {
    return (this.st.events!.all(runId ?? null, runId ?? null, limit) as Row[]).map((r) => ({
      id: r['id'] as number,
      runId: r['run_id'] as number,
      at: r['at'] as number,
      level: r['level'] as string,
      kind: r['kind'] as string,
      message: r['message'] as string,
      ...(r['data'] ? { data: JSON.parse(r['data'] as string) as unknown } : {}),
    }));
  }

  runs(limit = 10): { id: number; startedAt: number; endedAt: number | null; endReason: string | null; pid: number }[] {
    return (this.st.runs!.all(limit) as Row[]).map((r) => ({
      id: r['id'] as number,
      startedAt: r['started_at'] as number,
      endedAt: (r['ended_at'] as number | null) ?? null,
      endReason: (r['end_reason'] as string | null) ?? null,
      pid: r['pid'] as number,
    }));
  }

  /** Writes a checkpoint and keeps only the newest `keep` of its model and method. Returns its id. */
  saveCheckpoint(c: Omit<Checkpoint, 'id' | 'createdAt'>, keep: number): number {
    const tx = this.db.transaction(() => {
      const id = Number(this.st.saveCkpt!.run(c.runId, Date.now(), c.modelSha256, c.modelName, c.method, c.step, c.reason, Buffer.from(c.state.buffer, c.state.byteOffset, c.state.byteLength)).lastInsertRowid);
      this.st.pruneCkpt!.run({ sha: c.modelSha256, method: c.method, keep });
      return id;
    });
    return tx();
  }

  /** The newest checkpoint: of any model, or of one model (and method, when given). */
  latestCheckpoint(of?: { readonly modelSha256: string; readonly method?: string }): Checkpoint | undefined {
    const r = (of ? this.st.latestCkptFor!.get({ sha: of.modelSha256, method: of.method ?? null }) : this.st.latestCkpt!.get()) as Row | undefined;
    if (!r) return undefined;
    const buf = r['state'] as Buffer;
    return {
      id: r['id'] as number,
      runId: r['run_id'] as number,
      createdAt: r['created_at'] as number,
      modelSha256: r['model_sha256'] as string,
      modelName: r['model_name'] as string,
      method: r['method'] as string,
      step: r['step'] as number,
      reason: r['reason'] as string,
      state: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength),
    };
  }

  /** Deletes every checkpoint of one model (all methods); returns how many there were. */
  deleteCheckpoints(modelSha256: string): number {
    return this.st.deleteCkptFor!.run(modelSha256).changes;
  }

  checkpointCount(): number {
    return (this.st.countCkpt!.get() as { n: number }).n;
  }

  /** Appends predictions in one transaction, deleting the oldest beyond `maxRows`. */
  logPredictions(runId: number, modelSha256: string, rows: readonly PredictionRow[], maxRows: number): void {
    if (rows.length) this.insertPredictions(runId, modelSha256, rows, maxRows);
  }

  predictionCount(): number {
    return (this.st.countPred!.get() as { n: number }).n;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function migrate(db: Database.Database, path: string): void {
  const have = db.pragma('user_version', { simple: true }) as number;
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
  // a database with tables but not ours (the telemetry outbox beside it, a fleet database) would
  // otherwise fail on a missing table, or be called 'newer than this ttaq'
  if (tables.length > 0 && !tables.includes('checkpoints')) {
    throw new TtaqError('CONFIG_INVALID', `'${path}' is not a ttaq agent database (its tables: ${tables.slice(0, 5).join(', ')}); set storage.path to the agent's own file (a new path starts a new one)`, { path });
  }
  if (have > MIGRATIONS.length) {
    throw new TtaqError('STATE_MISMATCH', `agent database '${path}' has schema version ${have}, newer than this ttaq knows (${MIGRATIONS.length}); upgrade ttaq or point storage.path at another file`);
  }
  for (let v = have; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
