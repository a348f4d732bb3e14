// TelemetryClient: the agent's side of the fleet link. It publishes the retained status (online,
// stopped; the broker publishes `offline` as the Last Will), telemetry and events through the
// SQLite outbox, and runs commands through a handler registry with zod-validated arguments.
//
// Delivery: the outbox is the source of truth. A message is written (with its sequence number)
// before it is sent, handed to mqtt.js only while connected, at most `maxInflight` at a time, and
// deleted on PUBACK. mqtt.js re-sends what was in flight when a connection drops; everything else is
// replayed from the outbox, oldest first, once the connection is back (or the process restarted).
// A kill -9 therefore loses nothing that append() returned from; the receiver drops duplicates by
// (device, seq).
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import mqtt, { type MqttClient } from 'mqtt';
import type { z } from 'zod';
import { isTtaqError, TtaqError } from '../errors/index.ts';
import { mqttOptions, type ConnectionOptions } from './connection.ts';
import { Outbox, type OutboxOptions, type OutboxStats } from './outbox.ts';
import {
  CommandArgSchemas,
  CommandSchema,
  describeIssues,
  EventBodySchema,
  TelemetryBodySchema,
  type BuiltinCommand,
  type CommandArgs,
  type EventBody,
  type Reply,
  type Status,
  type TelemetryBody,
} from './schemas.ts';
import { checkCommandName, checkDeviceId, parseTopic, topics } from './topics.ts';

export interface TelemetryClientOptions extends ConnectionOptions {
  /** Device id: the topic segment and the default MQTT client id (`ttaq-<device>`). */
  readonly device: string;
  /** Outbox file (or options, or an open Outbox the caller owns). */
  readonly outbox: string | OutboxOptions | Outbox;
  readonly clientId?: string;
  /** Messages handed to mqtt.js without a PUBACK yet (default 64). */
  readonly maxInflight?: number;
  /** Agent name and version, put into the status message. */
  readonly agent?: string;
  /** Diagnostics sink (default: none). */
  readonly log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /**
   * Wait before trying again after the broker refused the login (default 30000 ms). mqtt.js itself
   * stops reconnecting after a refused CONNACK; a device must still come back once an operator has
   * fixed the broker's password file, without a restart.
   */
  readonly refusedRetryMs?: number;
}

/** CONNACK codes that mean the broker refused this client's credentials (MQTT 3.1.1 and 5). */
const AUTH_REFUSED: Readonly<Record<number, string>> = { 4: 'bad user name or password', 5: 'not authorized', 134: 'bad user name or password', 135: 'not authorized' };

export interface CommandContext {
  readonly device: string;
  readonly name: string;
  readonly id: string;
}

export type CommandHandler<A> = (args: A, ctx: CommandContext) => unknown | Promise<unknown>;

export interface ClientStats {
  readonly connected: boolean;
  readonly connects: number;
  readonly published: number;
  readonly acked: number;
  readonly inflight: number;
  readonly outbox: OutboxStats;
  readonly commands: { readonly ok: number; readonly rejected: number; readonly failed: number };
}

interface ClientEvents {
  connect: [];
  disconnect: [];
  /** The broker refused the login: once per run of refusals (TELEMETRY_CONNECT_FAILED, naming the credentials). */
  connectError: [error: TtaqError];
  acked: [seq: number];
  command: [name: string, reply: Reply];
}

export class TelemetryClient extends EventEmitter<ClientEvents> {
  readonly device: string;
  readonly session = randomUUID().slice(0, 8);
  private readonly outbox: Outbox;
  private readonly ownsOutbox: boolean;
  private readonly mqtt: MqttClient;
  private readonly maxInflight: number;
  private readonly log: NonNullable<TelemetryClientOptions['log']>;
  private readonly agent: string | undefined;
  private readonly handlers = new Map<string, { schema: z.ZodType; fn: CommandHandler<unknown> }>();
  private readonly inflight = new Set<number>();
  private cursor = 0;
  private connected = false;
  private stopping = false;
  private closed = false;
  private connects = 0;
  private published = 0;
  private acked = 0;
  private cmdStats = { ok: 0, rejected: 0, failed: 0 };
  private cmdChain: Promise<void> = Promise.resolve();
  private drainWaiters: (() => void)[] = [];
  private acks: number[] = [];
  private ackedSeqs: number[] = [];
  private outboxClosed = false;
  private refused = false;
  private refusedTimer: NodeJS.Timeout | undefined;
  private readonly refusedRetryMs: number;
  private readonly username: string | undefined;

  constructor(options: TelemetryClientOptions) {
    super();
    this.device = checkDeviceId(options.device);
    this.maxInflight = options.maxInflight ?? 64;
    this.log = options.log ?? (() => {});
    this.agent = options.agent;
    this.refusedRetryMs = options.refusedRetryMs ?? 30_000;
    this.username = options.username;
    if (options.outbox instanceof Outbox) {
      this.outbox = options.outbox;
      this.ownsOutbox = false;
    } else {
      this.outbox = new Outbox(typeof options.outbox === 'string' ? { path: options.outbox } : options.outbox);
      this.ownsOutbox = true;
    }
    const base = mqttOptions(options);
    this.mqtt = mqtt.connect(options.broker, {
      ...base,
      clientId: options.clientId ?? `ttaq-${this.device}`,
      clean: true,
      resubscribe: false,
      queueQoSZero: false,
      will: { topic: topics.status(this.device), payload: Buffer.from(this.statusPayload('offline')), qos: 1, retain: true },
    });
    this.mqtt.on('connect', () => this.onConnect());
    this.mqtt.on('close', () => this.onClose());
    this.mqtt.on('error', (e) => this.onError(e));
    this.mqtt.on('message', (topic, payload) => this.onMessage(topic, payload));
  }

  private statusPayload(state: Status['state']): string {
    const s: Status = { state, ts: Date.now(), session: this.session, ...(this.agent ? { agent: this.agent } : {}) };
    return JSON.stringify(s);
  }

  private onError(e: Error): void {
    const why = AUTH_REFUSED[(e as { code?: unknown }).code as number];
    if (why === undefined) {
      this.log('warn', `mqtt: ${e.message}`, { device: this.device });
      return;
    }
    if (!this.refused) {
      this.refused = true;
      const who = this.username === undefined ? 'no user name was given' : `user name '${this.username}'`;
      const err = new TtaqError(
        'TELEMETRY_CONNECT_FAILED',
        `the broker refused device ${this.device}'s login (${why}; ${who}); check the user name and password (the agent: telemetry.username and the variable telemetry.passwordEnv names), the broker's password file and ACL, or the client certificate; trying again every ${Math.round(this.refusedRetryMs / 1000)} s`,
        { device: this.device },
      );
      this.log('error', err.message, { device: this.device });
      this.emit('connectError', err);
    }
    if (!this.stopping && !this.refusedTimer) {
      this.refusedTimer = setTimeout(() => {
        this.refusedTimer = undefined;
        if (!this.stopping) this.mqtt.reconnect();
      }, this.refusedRetryMs);
      this.refusedTimer.unref();
    }
  }

  private onConnect(): void {
    this.refused = false;
    this.connects++;
    this.connected = true;
    this.cursor = 0;
    this.mqtt.publish(topics.status(this.device), this.statusPayload('online'), { qos: 1, retain: true });
    this.mqtt.subscribe(topics.deviceCommands(this.device), { qos: 1 }, (e) => {
      if (e) this.log('error', `subscribing to commands failed: ${e.message}`, { device: this.device });
    });
    this.log('info', 'connected', { device: this.device, pending: this.outbox.size });
    this.emit('connect');
    this.pump();
  }

  private onClose(): void {
    if (this.connected) {
      this.connected = false;
      this.emit('disconnect');
    }
    // The Last Will's timestamp: when this connection (re)starts.
    if (this.mqtt.options.will) this.mqtt.options.will.payload = Buffer.from(this.statusPayload('offline'));
  }

  /** Hands outbox rows to mqtt.js while connected and under the in-flight window. */
  private pump(): void {
    if (this.closed) return;
    while (this.connected && !this.mqtt.disconnecting && this.inflight.size < this.maxInflight) {
      const rows = this.outbox.pending(this.cursor, this.maxInflight);
      if (rows.length === 0) break;
      for (const row of rows) {
        this.cursor = row.id;
        if (this.inflight.has(row.id)) continue; // still owned by mqtt.js from before a reconnect
        if (this.inflight.size >= this.maxInflight) {
          this.cursor = row.id - 1;
          break;
        }
        this.inflight.add(row.id);
        this.published++;
        this.mqtt.publish(row.topic, row.payload, { qos: 1 }, (e) => {
          if (e) {
            // Stays in the outbox; replayed after the next connect.
            this.inflight.delete(row.id);
            this.log('warn', `publish of seq ${row.seq} not acknowledged: ${e.message}`, { device: this.device });
            this.pump();
            this.checkDrained();
            return;
          }
          // PUBACKs come in bursts: delete them from the outbox in one transaction per tick.
          this.acks.push(row.id);
          this.ackedSeqs.push(row.seq);
          if (this.acks.length === 1) setImmediate(() => this.applyAcks());
        });
      }
    }
    this.checkDrained();
  }

  private applyAcks(): void {
    if (this.acks.length === 0) return;
    const ids = this.acks;
    const seqs = this.ackedSeqs;
    this.acks = [];
    this.ackedSeqs = [];
    if (!this.outboxClosed) this.outbox.ackMany(ids);
    for (const id of ids) this.inflight.delete(id);
    this.acked += ids.length;
    for (const q of seqs) this.emit('acked', q);
    this.pump();
    this.checkDrained();
  }

  private checkDrained(): void {
    if (this.drainWaiters.length && this.outbox.size === 0 && this.inflight.size === 0) {
      const w = this.drainWaiters;
      this.drainWaiters = [];
      for (const f of w) f();
    }
  }

  private enqueue(topic: string, body: object): { seq: number } {
    if (this.closed) {
      throw new TtaqError('TELEMETRY_OUTBOX', `TelemetryClient of device ${this.device} is stopped; create a new one to publish`);
    }
    const row = this.outbox.append(this.device, topic, (seq, ts) => JSON.stringify({ ...body, seq, ts }));
    this.pump();
    return { seq: row.seq };
  }

  /** Validates, stamps (seq, ts), stores in the outbox and sends when connected. */
  publishTelemetry(body: TelemetryBody): { seq: number } {
    const r = TelemetryBodySchema.safeParse(body);
    if (!r.success) {
      throw new TtaqError('TELEMETRY_BAD_PAYLOAD', `telemetry of device ${this.device} is invalid: ${describeIssues(r.error)}`, { issues: r.error.issues });
    }
    return this.enqueue(topics.telemetry(this.device), { ...r.data, outboxPending: this.outbox.size, outboxDropped: this.outbox.droppedTotal });
  }

  publishEvent(body: EventBody): { seq: number } {
    const r = EventBodySchema.safeParse(body);
    if (!r.success) {
      throw new TtaqError('TELEMETRY_BAD_PAYLOAD', `event of device ${this.device} is invalid: ${describeIssues(r.error)}`, { issues: r.error.issues });
    }
    return this.enqueue(topics.events(this.device), r.data);
  }

  /** Registers the handler of a built-in command (arguments validated by its schema in schemas.ts). */
  onCommand<N extends BuiltinCommand>(name: N, handler: CommandHandler<CommandArgs<N>>): this;
  /** Registers a custom command with its own argument schema. */
  onCommand<S extends z.ZodType>(name: string, handler: CommandHandler<z.infer<S>>, schema: S): this;
  onCommand(name: string, handler: CommandHandler<never>, schema?: z.ZodType): this {
    checkCommandName(name);
    const s = schema ?? (CommandArgSchemas as Record<string, z.ZodType>)[name];
    if (!s) {
      throw new TtaqError('CONFIG_INVALID', `command '${name}' is not built in (${Object.keys(CommandArgSchemas).join(', ')}); pass its argument schema as the third argument`);
    }
    this.handlers.set(name, { schema: s, fn: handler as CommandHandler<unknown> });
    return this;
  }

  private onMessage(topic: string, payload: Buffer): void {
    const t = parseTopic(topic);
    if (!t || t.kind !== 'command' || t.device !== this.device) return;
    const name = t.command;
    this.cmdChain = this.cmdChain.then(() => this.runCommand(name, payload));
  }

  private async runCommand(name: string, payload: Buffer): Promise<void> {
    const where = topics.command(this.device, name);
    let reply: Reply;
    let raw: unknown;
    let id: string | null = null;
    try {
      raw = JSON.parse(payload.toString('utf8'));
      const maybeId = (raw as { id?: unknown } | null)?.id;
      if (typeof maybeId === 'string' && maybeId.length > 0 && maybeId.length <= 64) id = maybeId;
    } catch (e) {
      raw = undefined;
      reply = this.errorReply(null, 'TELEMETRY_BAD_PAYLOAD', `${where}: payload is not JSON (${(e as Error).message}); send {"id": "...", "args": {...}}`);
      this.cmdStats.rejected++;
      return this.sendReply(name, reply);
    }
    const env = CommandSchema.safeParse(raw);
    const handler = this.handlers.get(name);
    if (!env.success) {
      this.cmdStats.rejected++;
      reply = this.errorReply(id, 'TELEMETRY_BAD_PAYLOAD', `${where}: invalid command: ${describeIssues(env.error)}; send {"id": "...", "args": {...}}`);
    } else if (!handler) {
      this.cmdStats.rejected++;
      const known = [...this.handlers.keys()].join(', ') || 'none';
      reply = this.errorReply(id, 'TELEMETRY_UNKNOWN_COMMAND', `device ${this.device} has no handler for command '${name}' (it handles: ${known})`);
    } else {
      const args = handler.schema.safeParse(env.data.args);
      if (!args.success) {
        this.cmdStats.rejected++;
        reply = this.errorReply(id, 'TELEMETRY_BAD_PAYLOAD', `${where}: invalid arguments: ${describeIssues(args.error)}`);
      } else {
        try {
          const result = await handler.fn(args.data, { device: this.device, name, id: env.data.id });
          this.cmdStats.ok++;
          reply = { id, ok: true, ts: Date.now(), ...(result === undefined ? {} : { result }) };
        } catch (e) {
          // A failing handler never takes the agent down: it becomes an error reply.
          this.cmdStats.failed++;
          const code = isTtaqError(e) ? e.code : 'TELEMETRY_COMMAND_FAILED';
          reply = this.errorReply(id, code, `command '${name}' failed on device ${this.device}: ${(e as Error)?.message ?? String(e)}`);
        }
      }
    }
    this.sendReply(name, reply);
  }

  private errorReply(id: string | null, code: string, message: string): Reply {
    this.log('warn', message, { device: this.device, code });
    return { id, ok: false, ts: Date.now(), error: { code, message } };
  }

  private sendReply(name: string, reply: Reply): void {
    let text: string;
    try {
      text = JSON.stringify(reply);
    } catch (e) {
      text = JSON.stringify(this.errorReply(reply.id, 'TELEMETRY_COMMAND_FAILED', `command '${name}' returned a result that is not JSON: ${(e as Error).message}`));
    }
    this.mqtt.publish(topics.reply(this.device, name), text, { qos: 1 });
    this.emit('command', name, reply);
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** Resolves once connected; rejects with TELEMETRY_CONNECT_FAILED after timeoutMs. */
  waitConnected(timeoutMs = 10_000): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('connect', done);
        reject(new TtaqError('TELEMETRY_CONNECT_FAILED', `device ${this.device} could not reach the broker within ${timeoutMs} ms; check the broker URL, credentials and that the broker runs`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.once('connect', done);
    });
  }

  /** Resolves when every stored message has been acknowledged; false after timeoutMs. */
  flush(timeoutMs = 10_000): Promise<boolean> {
    if (this.outbox.size === 0 && this.inflight.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.drainWaiters = this.drainWaiters.filter((f) => f !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.drainWaiters.push(done);
    });
  }

  stats(): ClientStats {
    return {
      connected: this.connected,
      connects: this.connects,
      published: this.published,
      acked: this.acked,
      inflight: this.inflight.size,
      outbox: this.outbox.stats(),
      commands: { ...this.cmdStats },
    };
  }

  /**
   * Graceful stop: waits up to flushMs for the outbox to drain, publishes the retained `stopped`
   * status and disconnects (no Last Will). What is still in the outbox is sent after the next start.
   */
  async stop(flushMs = 2000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.refusedTimer);
    if (this.connected) {
      await this.flush(flushMs);
      await this.cmdChain;
      await new Promise<void>((resolve) => {
        this.mqtt.publish(topics.status(this.device), this.statusPayload('stopped'), { qos: 1, retain: true }, () => resolve());
        setTimeout(resolve, flushMs).unref();
      });
    }
    await this.mqtt.endAsync(!this.connected);
    this.closed = true;
    this.applyAcks();
    this.outboxClosed = this.ownsOutbox;
    if (this.ownsOutbox) this.outbox.close();
  }

  /**
   * Drops the connection the way a crash would: no DISCONNECT, so the broker publishes the Last
   * Will (`offline`). For tests and supervisors; the client is unusable afterwards.
   */
  abort(): void {
    this.stopping = true;
    clearTimeout(this.refusedTimer);
    this.closed = true;
    this.mqtt.stream?.destroy();
    this.mqtt.end(true);
    // A crash would not apply the acks of this tick either: those messages are sent again.
    this.acks = [];
    this.outboxClosed = this.ownsOutbox;
    if (this.ownsOutbox) this.outbox.close();
  }
}
