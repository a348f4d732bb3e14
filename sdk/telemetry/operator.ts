// The operator's side of commands: publish `ttaq/v1/<device>/cmd/<name>` and wait for the reply
// with the same id on `.../cmd/<name>/reply`. Used by `ttaq fleet cmd` and by tests.
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { TtaqError } from '../errors/index.ts';
import { mqttOptions, type ConnectionOptions } from './connection.ts';
import { parsePayload, ReplySchema, type Reply } from './schemas.ts';
import { topics } from './topics.ts';

export interface OperatorOptions extends ConnectionOptions {
  readonly clientId?: string;
}

/** A connection for sending commands; reuse it for many. */
export class Operator {
  private constructor(private readonly mqtt: MqttClient) {}

  static async connect(options: OperatorOptions): Promise<Operator> {
    const client = mqtt.connect(options.broker, {
      ...mqttOptions(options),
      clientId: options.clientId ?? `ttaq-op-${randomUUID().slice(0, 8)}`,
      clean: true,
      reconnectPeriod: options.reconnectMs ?? 1000,
    });
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
        client.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
        client.once('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
      });
    } catch (e) {
      client.end(true);
      throw new TtaqError('TELEMETRY_CONNECT_FAILED', `cannot connect to ${options.broker}: ${(e as Error).message}; check the URL, credentials and that the broker runs`, {}, { cause: e });
    }
    return new Operator(client);
  }

  /**
   * Sends a command and resolves with the device's reply (ok or not). Rejects with
   * TELEMETRY_TIMEOUT when no reply comes within timeoutMs (device offline, or not allowed).
   */
  async send(device: string, name: string, args: unknown = {}, timeoutMs = 10_000): Promise<Reply> {
    const id = randomUUID();
    const replyTopic = topics.reply(device, name);
    const cmdTopic = topics.command(device, name);
    await this.mqtt.subscribeAsync(replyTopic, { qos: 1 });
    try {
      return await new Promise<Reply>((resolve, reject) => {
        const onMessage = (topic: string, payload: Buffer) => {
          if (topic !== replyTopic) return;
          const r = parsePayload(ReplySchema, payload, topic);
          if (!r.ok || r.value.id !== id) return;
          cleanup();
          resolve(r.value);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new TtaqError('TELEMETRY_TIMEOUT', `no reply from device ${device} to command '${name}' within ${timeoutMs} ms; is it online ('ttaq fleet ls') and allowed to receive commands?`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          this.mqtt.off('message', onMessage);
        };
        this.mqtt.on('message', onMessage);
        this.mqtt.publish(cmdTopic, JSON.stringify({ id, ts: Date.now(), args }), { qos: 1 }, (e) => {
          if (e) {
            cleanup();
            reject(new TtaqError('TELEMETRY_COMMAND_FAILED', `publishing ${cmdTopic} failed: ${e.message}`));
          }
        });
      });
    } finally {
      await this.mqtt.unsubscribeAsync(replyTopic).catch(() => {});
    }
  }

  /** Publishes raw bytes on a topic (QoS 1); for tests of malformed commands and ACLs. */
  async publishRaw(topic: string, payload: string | Buffer): Promise<void> {
    await this.mqtt.publishAsync(topic, payload, { qos: 1 });
  }

  async close(): Promise<void> {
    await this.mqtt.endAsync();
  }
}
