// Broker connection flags shared by `ttaq receive` and `ttaq fleet cmd`: one option spec for
// node:util parseArgs, one function turning the parsed values into ConnectionOptions.
import { TtaqError } from '../errors/index.ts';
import { checkBrokerUrl, type ConnectionOptions } from './connection.ts';

export const connectionFlags = {
  options: {
    broker: { type: 'string' },
    username: { type: 'string' },
    password: { type: 'string' },
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    insecure: { type: 'boolean', default: false },
    mqtt5: { type: 'boolean', default: false },
  },
  help: `  --username U        broker user
  --password P        its password (other users can read it in the process list: prefer
                      $TTAQ_MQTT_PASSWORD, which is used when --password is absent)
  --ca FILE           CA certificate that signed the broker's (PEM; for mqtts://)
  --cert/--key FILE   client certificate and key for mutual TLS (PEM)
  --insecure          do not verify the broker's certificate (test brokers only)
  --mqtt5             speak MQTT 5 (default 3.1.1; receive's --share implies it)`,
} as const;

export interface ConnectionFlagValues {
  broker?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  insecure?: boolean | undefined;
  mqtt5?: boolean | undefined;
}

export function connectionFromFlags(v: ConnectionFlagValues, help: string): ConnectionOptions {
  if (!v.broker) throw new TtaqError('CLI_USAGE', `--broker is required (e.g. mqtt://localhost:1883)\n\n${help}`);
  checkBrokerUrl(v.broker);
  if ((v.cert === undefined) !== (v.key === undefined)) throw new TtaqError('CLI_USAGE', '--cert and --key go together (mutual TLS needs both)');
  const password = v.password ?? process.env.TTAQ_MQTT_PASSWORD;
  const tls = v.ca || v.cert || v.insecure
    ? { ...(v.ca ? { ca: v.ca } : {}), ...(v.cert ? { cert: v.cert } : {}), ...(v.key ? { key: v.key } : {}), rejectUnauthorized: !v.insecure }
    : undefined;
  return {
    broker: v.broker,
    ...(v.username !== undefined ? { username: v.username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(tls ? { tls } : {}),
    ...(v.mqtt5 ? { protocolVersion: 5 as const } : {}),
  };
}
