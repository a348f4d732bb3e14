// The fleet dashboard: one static page (dashboard.html, charts drawn as inline SVG by its own
// script, no chart library) and a small read-only JSON API over the fleet store:
//
//   GET /api/fleet                         devices with status, counters and latest telemetry
//   GET /api/devices/<id>?limit=300        time series, latest class histogram and priors, events, commands
//   GET /healthz                           {"ok": true}
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { TtaqError } from '../errors/index.ts';
import type { FleetStore } from './store.ts';

export interface DashboardOptions {
  readonly store: FleetStore;
  /** TCP port; 0 picks a free one (default 8080). */
  readonly port?: number;
  /** Interface (default 127.0.0.1; the API has no authentication: put a proxy in front to share it). */
  readonly host?: string;
  /** Extra figures for /api/fleet, e.g. the receiver's counters. */
  readonly stats?: () => unknown;
}

export interface Dashboard {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

const page = readFileSync(new URL('./dashboard.html', import.meta.url));

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}

function route(o: DashboardOptions, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://dashboard');
  if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'read-only API: use GET' });
  if (url.pathname === '/' || url.pathname === '/index.html') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(page);
    return;
  }
  if (url.pathname === '/healthz') return json(res, 200, { ok: true });
  if (url.pathname === '/api/fleet') {
    return json(res, 200, { now: Date.now(), devices: o.store.devices(), receiver: o.stats?.() ?? null });
  }
  const m = /^\/api\/devices\/([A-Za-z0-9._-]{1,64})$/.exec(url.pathname);
  if (m) {
    const device = m[1]!;
    const info = o.store.device(device);
    if (!info) return json(res, 404, { error: `no device '${device}' in the fleet database; GET /api/fleet lists them` });
    const limit = Math.min(5000, Math.max(1, Number(url.searchParams.get('limit') ?? 300) || 300));
    return json(res, 200, {
      device: info,
      series: o.store.series(device, limit),
      histogram: info.last?.classHistogram ?? [],
      priors: info.last?.ablPriors ?? null,
      events: o.store.events(device, 30),
      commands: o.store.commands(device, 20),
    });
  }
  json(res, 404, { error: `no route ${url.pathname}; try /, /api/fleet or /api/devices/<id>` });
}

export function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const host = options.host ?? '127.0.0.1';
  const server = createServer((req, res) => {
    try {
      route(options, req, res);
    } catch (e) {
      json(res, 500, { error: (e as Error).message });
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new TtaqError('CONFIG_INVALID', `dashboard cannot listen on ${host}:${options.port ?? 8080}: ${e.message}${e.code === 'EADDRINUSE' ? '; pick another --http port' : ''}`)),
    );
    server.listen(options.port ?? 8080, host, () => {
      const a = server.address();
      const port = a && typeof a === 'object' ? a.port : (options.port ?? 8080);
      resolve({
        port,
        url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}/`,
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
    });
  });
}
