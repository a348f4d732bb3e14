// The receiver: subscribes to every device's status, telemetry, events and command traffic,
// validates each payload with the shared schemas and stores it in the fleet database. A QoS 1
// message is acknowledged (PUBACK) only after its SQLite transaction committed, so a receiver crash
// loses nothing; the broker re-sends and (device, seq) de-duplicates.
//
// Exactly-once over a broker outage needs a persistent session: the receiver connects with a fixed
// client id and clean=false (MQTT 5: session expiry), so the broker queues messages for it while it
// is away. With `share`, several receivers split the fleet through an MQTT 5 shared subscription.
import { hostname } from 'node:os';
import { EventEmitter } from 'node:events';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { TtaqError } from '../errors/index.ts';
import { mqttOptions, type ConnectionOptions } from './connection.ts';
import { CommandSchema, EventSchema, parsePayload, ReplySchema, StatusSchema, TelemetrySchema } from './schemas.ts';
import { FleetStore } from './store.ts';
import { parseTopic, receiverFilters, shared } from './topics.ts';

export interface ReceiverOptions extends ConnectionOptions {
  /** Fleet database path, or an open FleetStore the caller owns. */
  readonly db: string | FleetStore;
  /** MQTT 5 shared-subscription group: `$share/<group>/ttaq/v1/+/...`. Implies protocolVersion 5. */
  readonly share?: string;
  /** Fixed client id for the persistent session (default `ttaq-receiver-<hostname>`; unique per receiver). */
  readonly clientId?: string;
  /** Persistent session (default true). */
  readonly persistentSession?: boolean;
  /** MQTT 5 session expiry in seconds (default 7 days). */
  readonly sessionExpiryS?: number;
  /** Most messages per SQLite commit (default 512). */
  readonly maxBatch?: number;
  readonly log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export interface ReceiverStats {
  readonly connected: boolean;
  readonly messages: number;
  readonly stored: number;
  readonly duplicates: number;
  readonly invalid: number;
  readonly ignored: number;
  readonly statuses: number;
  readonly commands: number;
}

interface ReceiverEvents {
  connect: [];
  stored: [device: string, kind: 'telemetry' | 'event', seq: number];
  status: [device: string, state: string];
  command: [device: string, name: string, kind: 'command' | 'reply'];
  invalid: [topic: string, error: TtaqError];
}

/** A connection the broker drops within this long is a quick drop; this many in a row are reported. */
const QUICK_DROP_MS = 5000;
const QUICK_DROPS_TO_WARN = 3;

const protocolOf = (o: ReceiverOptions): 4 | 5 => o.protocolVersion ?? (o.share ? 5 : 4);

export class Receiver extends EventEmitter<ReceiverEvents> {
  readonly store: FleetStore;
  private readonly ownsStore: boolean;
  private readonly mqtt: MqttClient;
  private readonly log: NonNullable<ReceiverOptions['log']>;
  private batch = 0;
  private heldAcks: { cmd: string }[] = [];
  private commitScheduled = false;
  private readonly maxBatch: number;
  private sendRaw: ((packet: { cmd: string }) => void) | null = null;
  private readonly clientId: string;
  /** When the current connection was made; 0 while disconnected. */
  private connectedAt = 0;
  private quickDrops = 0;
  private closing = false;
  private lastError: string | undefined;
  private counters = { messages: 0, stored: 0, duplicates: 0, invalid: 0, ignored: 0, statuses: 0, commands: 0 };

  private constructor(options: ReceiverOptions) {
    super();
    this.log = options.log ?? (() => {});
    if (typeof options.db === 'string') {
      this.store = new FleetStore(options.db);
      this.ownsStore = true;
    } else {
      this.store = options.db;
      this.ownsStore = false;
    }
    const protocolVersion = protocolOf(options);
    const persistent = options.persistentSession ?? true;
    this.clientId = options.clientId ?? `ttaq-receiver-${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}`.slice(0, 64);
    const o: IClientOptions = {
      ...mqttOptions({ ...options, protocolVersion }),
      clientId: this.clientId,
      clean: !persistent,
      resubscribe: true,
    };
    if (protocolVersion === 5 && persistent) o.properties = { sessionExpiryInterval: options.sessionExpiryS ?? 7 * 24 * 3600 };
    this.mqtt = mqtt.connect(options.broker, o);
    // Store first, acknowledge after the commit. Messages are written into one open transaction
    // (group commit) that is committed once the socket's current chunk is processed, or after
    // `maxBatch` messages; their PUBACKs are held back until then. mqtt.js sends PUBACK from
    // handleMessage's callback through its _sendPacket, which is where they are held.
    const client = this.mqtt as unknown as { _sendPacket?: (packet: { cmd: string }, cb?: () => void, ...rest: unknown[]) => void };
    const send = typeof client._sendPacket === 'function' ? client._sendPacket.bind(this.mqtt) : null;
    if (send) {
      client._sendPacket = (packet, cb, ...rest) => {
        if (packet.cmd === 'puback' && this.batch > 0) {
          this.heldAcks.push(packet);
          cb?.();
          return;
        }
        send(packet, cb, ...rest);
      };
      this.sendRaw = send;
    }
    this.maxBatch = send ? (options.maxBatch ?? 512) : 1;
    this.mqtt.handleMessage = (packet, done) => {
      try {
        if (this.batch === 0) this.store.begin();
        this.handle(packet.topic, packet.payload as Buffer);
        this.batch++;
      } catch (e) {
        this.abortBatch(`storing a message from ${packet.topic} failed: ${(e as Error).message}`);
        done(e as Error);
        return;
      }
      done();
      if (this.batch >= this.maxBatch) this.commitBatch();
      else if (!this.commitScheduled) {
        this.commitScheduled = true;
        setImmediate(() => this.commitBatch());
      }
    };
    const filters = receiverFilters.map((f) => shared(options.share, f));
    this.mqtt.on('connect', (connack) => {
      this.connectedAt = Date.now();
      // With a resumed session the broker still has our subscriptions; subscribing again is harmless.
      if (!connack.sessionPresent || !persistent) {
        this.mqtt.subscribe(Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }])), (e, granted) => {
          if (e) this.log('error', `subscribe failed: ${e.message}`);
          for (const g of granted ?? []) {
            if (g.qos === 128) this.log('error', `broker refused subscription ${g.topic} (check the ACL of this receiver's user)`);
          }
          this.emit('connect');
        });
      } else {
        this.emit('connect');
      }
      this.log('info', 'receiver connected', { sessionPresent: connack.sessionPresent });
    });
    this.mqtt.on('close', () => {
      const was = this.connectedAt;
      this.connectedAt = 0;
      // What is stored stays stored; the held PUBACKs are moot (the broker re-sends, we de-duplicate).
      this.commitBatch();
      this.heldAcks = [];
      if (was === 0 || this.closing) return;
      // A broker drops the older of two connections with one client id. Two receivers sharing an
      // id (two plain `ttaq receive` on one host share the default) then take the session from
      // each other at every reconnect and split the fleet's messages between their databases.
      this.quickDrops = Date.now() - was < QUICK_DROP_MS ? this.quickDrops + 1 : 0;
      if (this.quickDrops === QUICK_DROPS_TO_WARN) {
        this.log('warn', `the broker dropped this receiver ${QUICK_DROPS_TO_WARN} times within ${QUICK_DROP_MS / 1000} s of connecting: another client probably uses the same client id '${this.clientId}', and the two split the messages between them; give each receiver its own --client-id (or use --share GROUP)`);
      } else if (this.quickDrops < QUICK_DROPS_TO_WARN) {
        this.log('warn', `connection to the broker lost; reconnecting (what was stored is kept, the broker re-sends the rest)`);
      }
    });
    this.mqtt.on('error', (e) => {
      this.lastError = e.message;
      this.log('warn', `mqtt: ${e.message}`);
    });
  }

  /** Connects and resolves once subscribed; rejects after connectTimeoutMs (default 10 s). */
  static async start(options: ReceiverOptions): Promise<Receiver> {
    const r = new Receiver(options);
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    await new Promise<void>((resolve, reject) => {
      const fail = (why: string) => {
        clearTimeout(timer);
        r.mqtt.off('error', onError);
        r.close().catch(() => {});
        reject(new TtaqError('TELEMETRY_CONNECT_FAILED', `receiver could not connect to ${options.broker}: ${why}`));
      };
      const timer = setTimeout(() => {
        fail(`no connection within ${timeoutMs} ms${r.lastError ? ` (last error: ${r.lastError})` : ''}; check the URL, credentials and that the broker runs`);
      }, timeoutMs);
      // The broker answered and said no (bad credentials, not authorised, MQTT 5 not spoken):
      // retrying cannot help, so say so now rather than after the timeout.
      const onError = (e: Error) => {
        if (e.message.startsWith('Connection refused')) fail(`${e.message}; check --username/--password and the broker's ACL${protocolOf(options) === 5 ? ', and that the broker speaks MQTT 5 (--share and --mqtt5 need it; the embedded broker does not)' : ''}`);
      };
      r.mqtt.on('error', onError);
      r.once('connect', () => {
        clearTimeout(timer);
        r.mqtt.off('error', onError);
        resolve();
      });
    });
    return r;
  }

  private handle(topic: string, payload: Buffer): void {
    this.counters.messages++;
    const t = parseTopic(topic);
    if (!t) {
      this.counters.ignored++;
      return;
    }
    const now = Date.now();
    const bad = (e: TtaqError) => {
      this.counters.invalid++;
      this.store.recordInvalid(t.device, now);
      this.log('warn', e.message);
      this.emit('invalid', topic, e);
    };
    switch (t.kind) {
      case 'telemetry': {
        const r = parsePayload(TelemetrySchema, payload, topic);
        if (!r.ok) return bad(r.error);
        const res = this.store.ingestTelemetry(t.device, r.value, JSON.stringify(r.value), now);
        this.count(res, t.device, 'telemetry', r.value.seq);
        return;
      }
      case 'events': {
        const r = parsePayload(EventSchema, payload, topic);
        if (!r.ok) return bad(r.error);
        const res = this.store.ingestEvent(t.device, r.value, JSON.stringify(r.value), now);
        this.count(res, t.device, 'event', r.value.seq);
        return;
      }
      case 'status': {
        if (payload.length === 0) return; // a cleared retained message
        const r = parsePayload(StatusSchema, payload, topic);
        if (!r.ok) return bad(r.error);
        this.counters.statuses++;
        this.store.setStatus(t.device, r.value, now);
        this.emit('status', t.device, r.value.state);
        return;
      }
      case 'command':
      case 'reply': {
        // Logged for the audit trail even when malformed: that is when it matters.
        const schema = t.kind === 'command' ? CommandSchema : ReplySchema;
        const r = parsePayload(schema, payload, topic);
        const id = r.ok ? ((r.value as { id: string | null }).id ?? null) : null;
        const okFlag = t.kind === 'reply' && r.ok ? (r.value as { ok: boolean }).ok : null;
        this.counters.commands++;
        this.store.recordCommand(t.device, t.command, t.kind, id, okFlag, payload.toString('utf8').slice(0, 8192), now);
        this.emit('command', t.device, t.command, t.kind);
        return;
      }
    }
  }

  /** Commits the open batch, then sends the PUBACKs it held. */
  private commitBatch(): void {
    this.commitScheduled = false;
    if (this.batch === 0) return;
    try {
      this.store.commit();
    } catch (e) {
      this.abortBatch(`committing ${this.batch} messages failed: ${(e as Error).message}`);
      return;
    }
    this.batch = 0;
    const acks = this.heldAcks;
    this.heldAcks = [];
    // mqtt.js is connected (and delivering) before it emits 'connect': ask it, not our flag. Once
    // close() has sent DISCONNECT nothing may follow it (the socket is ending: writing there was
    // the 'write after end' of every shutdown under load). Messages that came in meanwhile stay
    // stored but unacknowledged: the broker re-sends them to the session and (device, seq)
    // de-duplicates them.
    if (this.mqtt.connected && !this.mqtt.disconnecting && this.sendRaw) for (const a of acks) this.sendRaw(a);
  }

  /** Rolls the batch back without acknowledging it, and reconnects so the broker re-sends it. */
  private abortBatch(why: string): void {
    this.log('error', `${why}; rolled back, the broker will re-send`);
    try {
      this.store.rollback();
    } catch {
      // already rolled back by SQLite
    }
    this.batch = 0;
    this.heldAcks = [];
    this.mqtt.stream?.destroy();
  }

  private count(res: 'new' | 'duplicate', device: string, kind: 'telemetry' | 'event', seq: number): void {
    if (res === 'duplicate') {
      this.counters.duplicates++;
      return;
    }
    this.counters.stored++;
    this.emit('stored', device, kind, seq);
  }

  stats(): ReceiverStats {
    return { connected: this.isConnected, ...this.counters };
  }

  get isConnected(): boolean {
    return this.connectedAt > 0;
  }

  /** Commits and acknowledges what came in, then disconnects; what arrives after that is stored, not acknowledged. */
  async close(): Promise<void> {
    this.closing = true;
    this.commitBatch();
    await this.mqtt.endAsync(false);
    this.commitBatch();
    if (this.ownsStore) this.store.close();
  }
}
