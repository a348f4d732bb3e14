// The embedded broker: aedes (MQTT 3.1.1) in-process, for a single box or a small fleet, and for
// tests. Sessions, retained messages and queued QoS 1 messages live in memory: they survive
// stop()/start() (a simulated network outage) but not close() or the process. For a fleet use
// Mosquitto or EMQX (docs/TELEMETRY.md).
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createSecureContext, createServer as createTlsServer } from 'node:tls';
import { Aedes, type AedesOptions } from 'aedes';
import { TtaqError } from '../errors/index.ts';

export interface EmbeddedBrokerOptions {
  /** TCP port; 0 picks a free one (default 1883). */
  readonly port?: number;
  /** Interface to listen on (default 127.0.0.1; '0.0.0.0' for every interface). */
  readonly host?: string;
  /** Serve MQTT over TLS: PEM key and certificate; `ca` + `requestCert` for client certificates. */
  readonly tls?: { key: Buffer | string; cert: Buffer | string; ca?: Buffer | string; requestCert?: boolean };
  /** aedes hooks: authenticate, authorizePublish, authorizeSubscribe, ... */
  readonly aedes?: Partial<AedesOptions>;
}

export interface EmbeddedBroker {
  readonly port: number;
  readonly host: string;
  /** `mqtt://host:port` (or `mqtts://`). */
  readonly url: string;
  readonly aedes: Aedes;
  /** Stops listening and drops every connection, keeping sessions and queued messages (an outage). */
  stop(): Promise<void>;
  /** Listens again on the same port after stop(). */
  start(): Promise<void>;
  /** Shuts the broker down for good. */
  close(): Promise<void>;
}

export async function startEmbeddedBroker(options: EmbeddedBrokerOptions = {}): Promise<EmbeddedBroker> {
  const host = options.host ?? '127.0.0.1';
  if (options.tls) {
    // Checked before anything listens: a key that does not match its certificate would otherwise
    // throw from inside the server's creation, past the error handling of listen().
    try {
      createSecureContext(options.tls);
    } catch (e) {
      throw new TtaqError('CONFIG_INVALID', `the broker's TLS certificate, key and CA do not load (${(e as Error).message}); pass the PEM certificate and its own key`, {}, { cause: e });
    }
  }
  const aedes = await Aedes.createBroker({ ...(options.aedes ?? {}) });
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  let port = options.port ?? 1883;

  const makeServer = (): Server => {
    const handler = (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      aedes.handle(s);
    };
    const srv = options.tls ? createTlsServer(options.tls, handler) : createNetServer(handler);
    if (options.tls) srv.on('tlsClientError', () => {}); // a failed handshake is the client's problem
    return srv;
  };

  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const srv = makeServer();
      srv.once('error', (e: NodeJS.ErrnoException) => {
        reject(new TtaqError('TELEMETRY_CONNECT_FAILED', `embedded broker cannot listen on ${host}:${port}: ${e.message}${e.code === 'EADDRINUSE' ? '; another broker runs there: pick another --port' : ''}`, {}, { cause: e }));
      });
      srv.listen(port, host, () => {
        const a = srv.address();
        if (a && typeof a === 'object') port = a.port;
        server = srv;
        resolve();
      });
    });

  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      const srv = server;
      server = null;
      for (const s of sockets) s.destroy();
      sockets.clear();
      if (!srv) return resolve();
      srv.close(() => resolve());
    });

  try {
    await listen();
  } catch (e) {
    // aedes keeps timers of its own: left open, the process would outlive the failed start
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw e;
  }
  return {
    get port() {
      return port;
    },
    host,
    get url() {
      return `${options.tls ? 'mqtts' : 'mqtt'}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
    },
    aedes,
    stop,
    start: async () => {
      if (!server) await listen();
    },
    close: async () => {
      await stop();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}
