// Connection options shared by the agent client, the receiver and the operator tools: broker URL,
// TLS material and credentials, turned into mqtt.js options in one place.
import { readFileSync } from 'node:fs';
import type { IClientOptions } from 'mqtt';
import { TtaqError } from '../errors/index.ts';

export interface TlsOptions {
  /** CA certificate(s) that signed the broker's certificate: PEM text or a file path. */
  readonly ca?: string | Buffer;
  /** Client certificate for mutual TLS: PEM text or a file path. */
  readonly cert?: string | Buffer;
  /** Client private key: PEM text or a file path. */
  readonly key?: string | Buffer;
  /** Verify the broker's certificate (default true; turn off only for a throwaway test broker). */
  readonly rejectUnauthorized?: boolean;
  /** Host name to check the broker's certificate against, when it differs from the URL's. */
  readonly servername?: string;
}

export interface ConnectionOptions {
  /** `mqtt://host:1883`, `mqtts://host:8883` (TLS), `ws://`, `wss://`. */
  readonly broker: string;
  readonly username?: string;
  readonly password?: string;
  readonly tls?: TlsOptions;
  /** MQTT protocol: 4 = 3.1.1 (default; every broker, aedes included), 5 = MQTT 5. */
  readonly protocolVersion?: 4 | 5;
  /** Keep-alive in seconds (default 30): how fast the broker notices a dead client. */
  readonly keepaliveS?: number;
  /** Wait between reconnect attempts in ms (default 1000). */
  readonly reconnectMs?: number;
  /** Give up on one connection attempt after this many ms (default 10000). */
  readonly connectTimeoutMs?: number;
}

function pem(v: string | Buffer | undefined, what: string): Buffer | undefined {
  if (v === undefined) return undefined;
  if (Buffer.isBuffer(v)) return v;
  if (v.includes('-----BEGIN')) return Buffer.from(v);
  try {
    return readFileSync(v);
  } catch (e) {
    throw new TtaqError('CONFIG_INVALID', `TLS ${what} file ${v} cannot be read (${(e as Error).message}); pass a PEM file path or the PEM text`);
  }
}

export function checkBrokerUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TtaqError('CONFIG_INVALID', `broker URL '${url}' is not a URL; use e.g. mqtt://localhost:1883 or mqtts://broker.example:8883`);
  }
  if (!['mqtt:', 'mqtts:', 'tcp:', 'ssl:', 'tls:', 'ws:', 'wss:'].includes(u.protocol)) {
    // 'localhost:1883' parses as the scheme 'localhost:': say what is missing
    if (!url.includes('://')) throw new TtaqError('CONFIG_INVALID', `broker URL '${url}' has no scheme; write mqtt://${url} (or mqtts://, ws://, wss://)`);
    throw new TtaqError('CONFIG_INVALID', `broker URL '${url}' has scheme ${u.protocol}; use mqtt://, mqtts://, ws:// or wss://`);
  }
  return u;
}

/** mqtt.js options for one connection; the caller adds clientId, will, clean, etc. */
export function mqttOptions(c: ConnectionOptions): IClientOptions {
  checkBrokerUrl(c.broker);
  const o: IClientOptions = {
    protocolVersion: c.protocolVersion ?? 4,
    keepalive: c.keepaliveS ?? 30,
    reconnectPeriod: c.reconnectMs ?? 1000,
    connectTimeout: c.connectTimeoutMs ?? 10_000,
  };
  if (c.username !== undefined) o.username = c.username;
  if (c.password !== undefined) o.password = c.password;
  if (c.tls) {
    const ca = pem(c.tls.ca, 'CA');
    const cert = pem(c.tls.cert, 'certificate');
    const key = pem(c.tls.key, 'key');
    if ((cert === undefined) !== (key === undefined)) {
      throw new TtaqError('CONFIG_INVALID', 'TLS client certificate and key go together: pass both tls.cert and tls.key, or neither');
    }
    if (ca) o.ca = ca;
    if (cert) o.cert = cert;
    if (key) o.key = key;
    o.rejectUnauthorized = c.tls.rejectUnauthorized ?? true;
    if (c.tls.servername) o.servername = c.tls.servername;
  }
  return o;
}
