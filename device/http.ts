// The agent's HTTP endpoint on node:http (no framework):
//   GET  /healthz   200 {"status":"ok",...} while frames flow; 503 with the reason otherwise
//   GET  /metrics   Prometheus text format
//   GET  /status    the agent's state as JSON
//   POST /pause, /resume, /reload (JSON body {"path"?, "manifest"?}),
//        /adaptation/reset (JSON body {"scope"?: "adaptation" | "all"}, as the MQTT command),
//        /checkpoint   (only with http.control: true)
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isTtaqError, TtaqError } from '../sdk/errors/index.ts';
import { CommandArgSchemas } from '../sdk/telemetry/index.ts';
import type { AgentCommand } from './ports.ts';

export interface HttpHandlers {
  health(): { ok: boolean; body: Record<string, unknown> };
  metrics(): string;
  status(): Record<string, unknown>;
  command(c: AgentCommand): Promise<unknown>;
}

export interface HttpOptions {
  readonly host: string;
  readonly port: number;
  readonly control: boolean;
}

const MAX_BODY = 64 * 1024;

function send(res: ServerResponse, code: number, body: string, type = 'application/json; charset=utf-8'): void {
  res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

const json = (res: ServerResponse, code: number, v: unknown) => send(res, code, JSON.stringify(v) + '\n');

async function readBody(req: IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new Error(`body larger than ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  return text ? (JSON.parse(text) as unknown) : {};
}

const ROUTES: Record<string, (body: Record<string, unknown>) => AgentCommand> = {
  '/pause': () => ({ name: 'pause' }),
  '/resume': () => ({ name: 'resume' }),
  '/adaptation/reset': (b) => {
    // The fleet command's own schema, so HTTP and MQTT accept and refuse the same bodies.
    const r = CommandArgSchemas.reset.safeParse(b);
    if (!r.success) throw new TtaqError('CLI_USAGE', `POST /adaptation/reset: ${r.error.issues[0]!.message}; send {"scope": "adaptation"} or {"scope": "all"} (or nothing)`);
    return { name: 'reset', scope: r.data.scope };
  },
  '/checkpoint': () => ({ name: 'checkpoint' }),
  '/options': (b) => ({ name: 'set-options', options: b }),
  '/reload': (b) => ({
    name: 'reload',
    ...(typeof b['url'] === 'string' ? { url: b['url'] } : {}),
    ...(typeof b['path'] === 'string' ? { path: b['path'] } : {}),
    ...(typeof b['manifest'] === 'string' ? { manifest: b['manifest'] } : {}),
    ...(typeof b['sha256'] === 'string' ? { sha256: b['sha256'] } : {}),
  }),
};

export class AgentHttp {
  private server: Server | undefined;

  constructor(private readonly o: HttpOptions, private readonly h: HttpHandlers) {}

  /** Starts listening; resolves with the bound port. */
  async start(): Promise<number> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => json(res, 500, { error: { code: 'INTERNAL', message: (e as Error).message } }));
    });
    server.keepAliveTimeout = 5000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const fail = (e: NodeJS.ErrnoException): void => {
        this.server = undefined;
        const at = `${this.o.host}:${this.o.port}`;
        if (e.code === 'EADDRINUSE') reject(new TtaqError('CONFIG_INVALID', `http.port: ${at} is already in use (another agent or service?); set http.port to a free port (0 picks one) or http.enabled: false`, { key: 'http.port' }, { cause: e }));
        else if (e.code === 'EACCES') reject(new TtaqError('CONFIG_INVALID', `http.port: not allowed to listen on ${at}; use a port above 1023 or run with the right privileges`, { key: 'http.port' }, { cause: e }));
        else if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') reject(new TtaqError('CONFIG_INVALID', `http.host: ${this.o.host} is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of its interfaces`, { key: 'http.host' }, { cause: e }));
        else reject(e);
      };
      server.once('error', fail);
      server.listen(this.o.port, this.o.host, () => { server.off('error', fail); resolve(); });
    });
    return (server.address() as AddressInfo).port;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'GET' || req.method === 'HEAD') {
      if (path === '/healthz') {
        const h = this.h.health();
        return json(res, h.ok ? 200 : 503, h.body);
      }
      if (path === '/metrics') return send(res, 200, this.h.metrics(), 'text/plain; version=0.0.4; charset=utf-8');
      if (path === '/status') return json(res, 200, this.h.status());
      if (ROUTES[path]) return json(res, 405, { error: { code: 'CLI_USAGE', message: `use POST ${path}` } });
      return json(res, 404, { error: { code: 'CLI_USAGE', message: `no route ${path}; try /healthz, /metrics, /status` } });
    }
    if (req.method === 'POST' && ROUTES[path]) {
      if (!this.o.control) {
        return json(res, 403, { error: { code: 'CONFIG_INVALID', message: `control endpoints are off; set http.control: true in the agent config to allow POST ${path}` } });
      }
      let body: unknown;
      try {
        body = await readBody(req);
      } catch (e) {
        return json(res, 400, { error: { code: 'CLI_USAGE', message: `POST ${path}: ${(e as Error).message}; send a JSON object or nothing` } });
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        return json(res, 400, { error: { code: 'CLI_USAGE', message: `POST ${path}: the body must be a JSON object` } });
      }
      let command: AgentCommand;
      try {
        command = ROUTES[path]!(body as Record<string, unknown>);
      } catch (e) {
        return json(res, 400, { error: { code: isTtaqError(e) ? e.code : 'CLI_USAGE', message: (e as Error).message } });
      }
      try {
        const result = await this.h.command(command);
        return json(res, 200, { ok: true, result: result ?? null });
      } catch (e) {
        const code = isTtaqError(e) ? e.code : 'INTERNAL';
        return json(res, code === 'INTERNAL' ? 500 : 409, { ok: false, error: { code, message: (e as Error).message } });
      }
    }
    return json(res, 405, { error: { code: 'CLI_USAGE', message: `${req.method} ${path} is not supported` } });
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }
}
