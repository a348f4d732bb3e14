// Connection options shared by the agent client, the receiver and the operator tools: broker URL,
// TLS material and credentials, turned into mqtt.js options in one place.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
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

/** What a TLS file holds: certificates (a CA bundle or a client certificate) or a private key. */
type PemKind = 'CA' | 'certificate' | 'key';

/**
 * TLS material as PEM bytes, from PEM text or a file path, checked here so that a wrong file is
 * named when the options are built: left to mqtt.js and OpenSSL, a key that is not PEM fails
 * inside tls.connect with 'PEM routines::no start line', and a CA that is not PEM is silently
 * ignored until the handshake fails.
 */
export function readPem(v: string | Buffer | undefined, what: PemKind, flag = `TLS ${what}`): Buffer | undefined {
  if (v === undefined) return undefined;
  let bytes: Buffer;
  let source: string;
  if (Buffer.isBuffer(v)) {
    bytes = v;
    source = flag;
  } else if (v.includes('-----BEGIN')) {
    bytes = Buffer.from(v);
    source = `${flag} text`;
  } else {
    try {
      bytes = readFileSync(v);
    } catch (e) {
      throw new TtaqError('CONFIG_INVALID', `${flag} file ${v} cannot be read (${(e as Error).message}); pass a PEM file path or the PEM text`);
    }
    source = `${flag} file ${v}`;
  }
  const expected = what === 'key' ? 'a PEM private key (-----BEGIN PRIVATE KEY-----)' : 'a PEM certificate (-----BEGIN CERTIFICATE-----)';
  if (!bytes.includes('-----BEGIN')) throw new TtaqError('CONFIG_INVALID', `${source} is not PEM; expected ${expected}`);
  try {
    if (what === 'key') createPrivateKey(bytes);
    else new X509Certificate(bytes);
  } catch (e) {
    throw new TtaqError('CONFIG_INVALID', `${source} does not parse as ${expected}: ${(e as Error).message}`);
  }
  return bytes;
}

/** A client certificate and its key belong together: OpenSSL's check, with the files named. */
export function checkKeyPair(cert: Buffer, key: Buffer, names: string): void {
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    throw new TtaqError('CONFIG_INVALID', `${names} do not load together (${(e as Error).message}); the key must be the certificate's own`);
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
    const ca = readPem(c.tls.ca, 'CA');
    const cert = readPem(c.tls.cert, 'certificate');
    const key = readPem(c.tls.key, 'key');
    if ((cert === undefined) !== (key === undefined)) {
      throw new TtaqError('CONFIG_INVALID', 'TLS client certificate and key go together: pass both tls.cert and tls.key, or neither');
    }
    if (cert && key) checkKeyPair(cert, key, 'the TLS client certificate and key');
    if (ca) o.ca = ca;
    if (cert) o.cert = cert;
    if (key) o.key = key;
    o.rejectUnauthorized = c.tls.rejectUnauthorized ?? true;
    if (c.tls.servername) o.servername = c.tls.servername;
  }
  return o;
}
