// The agent's telemetry sinks: MQTT through sdk/telemetry's TelemetryClient (with its SQLite
// outbox), the log, or memory (tests).
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AgentConfig } from './config.ts';
import { TtaqError } from '../sdk/errors/index.ts';
import type { ConnectionOptions } from '../sdk/telemetry/index.ts';
import { nullTelemetry, type AgentCommand, type AgentEvent, type TelemetryReport, type TelemetrySink } from './ports.ts';

/** A sink that writes to the agent's log. */
export function logTelemetry(log: Logger): TelemetrySink {
  return {
    telemetry(report: TelemetryReport) { log.debug({ telemetry: report }, 'telemetry'); },
    event(e: AgentEvent) { log.info({ event: e }, `event ${e.type}`); },
    async flush() {},
    async close() {},
  };
}

/** A sink that records everything (tests, and `--dry-run` style inspection). */
export function memoryTelemetry(): TelemetrySink & { reports: TelemetryReport[]; events: AgentEvent[]; closed: boolean; command?: (c: AgentCommand) => Promise<unknown> } {
  const sink = {
    reports: [] as TelemetryReport[],
    events: [] as AgentEvent[],
    closed: false,
    command: undefined as ((c: AgentCommand) => Promise<unknown>) | undefined,
    telemetry(r: TelemetryReport) { sink.reports.push(r); },
    event(e: AgentEvent) { sink.events.push(e); },
    onCommand(h: (c: AgentCommand) => Promise<unknown>) { sink.command = h; },
    async flush() {},
    async close() { sink.closed = true; },
  };
  return sink;
}

/** Command arguments handed to the agent as they are (it validates them itself). */
const anyObject = z.record(z.string(), z.unknown());

export const deviceIdOf = (c: AgentConfig['telemetry']): string =>
  c.deviceId ?? hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64);

/**
 * The MQTT sink on sdk/telemetry's TelemetryClient: reports and events go through its SQLite outbox
 * (kept while the broker is unreachable), fleet commands come back to the agent. Imported only
 * when telemetry is on.
 */
export async function mqttTelemetry(c: AgentConfig, log: Logger, env: NodeJS.ProcessEnv = process.env): Promise<TelemetrySink> {
  const { TelemetryClient } = await import('../sdk/telemetry/index.ts');
  const client = new TelemetryClient({
    broker: c.telemetry.url,
    ...(await telemetryCredentials(c.telemetry, env)),
    device: deviceIdOf(c.telemetry),
    outbox: c.telemetry.outbox ?? join(dirname(c.storage.path), 'telemetry-outbox.db'),
    agent: 'ttaq-agent',
    log: (level, msg, fields) => log[level](fields ?? {}, `telemetry: ${msg}`),
  });
  // (A refused login does not stop the agent: it keeps inferring and adapting, the outbox keeps the
  // reports, and the client logs the refusal once, at error, naming these settings, and retries.)

  // Publishing validates the payload; a bad one is a bug to log, never a reason to stop the agent.
  const guard = (what: string, f: () => unknown) => {
    try {
      f();
    } catch (e) {
      log.warn({ err: e }, `telemetry ${what} not sent: ${(e as Error).message}`);
    }
  };
  return {
    telemetry: (r) => guard('report', () => client.publishTelemetry(r)),
    event: (e) => guard(`event ${e.type}`, () => client.publishEvent(e)),
    onCommand(h) {
      client.onCommand('pause', () => h({ name: 'pause' }));
      client.onCommand('resume', () => h({ name: 'resume' }));
      client.onCommand('reset', (a) => h({ name: 'reset', scope: a.scope }));
      // A snapshot is an adaptation-state checkpoint taken now; the reply names it.
      client.onCommand('snapshot', () => h({ name: 'checkpoint' }));
      // By path on the device, or by https URL (downloaded into model.cacheDir, checked against the manifest).
      client.onCommand('reload', (a) => h(a.url ? { name: 'reload', url: a.url, sha256: a.sha256 } : { name: 'reload', path: a.path, sha256: a.sha256 }));
      // set-options goes to the agent unchecked: its setOptions validates with the fleet's schema
      // (parseSetOptions) and applies every key, batching ones included, exactly as for POST /options,
      // so both paths accept, apply and refuse alike (CONFIG_INVALID, the same message).
      client.onCommand('set-options', (a) => h({ name: 'set-options', options: a }), anyObject);
    },
    async flush(ms) {
      await client.flush(ms);
    },
    async close() {
      await client.stop(2000);
    },
  };
}

/**
 * The user name, password (from the environment variable telemetry.passwordEnv names) and TLS
 * material for the broker. The PEM files are read and checked here, so a wrong path stops the
 * agent at start with the config key that holds it.
 */
export async function telemetryCredentials(t: AgentConfig['telemetry'], env: NodeJS.ProcessEnv): Promise<Pick<ConnectionOptions, 'username' | 'password' | 'tls'>> {
  const { readPem } = await import('../sdk/telemetry/index.ts');
  const password = env[t.passwordEnv];
  if (t.username !== undefined && !password) {
    throw new TtaqError('CONFIG_INVALID', `telemetry.username is '${t.username}' but the environment variable ${t.passwordEnv} (telemetry.passwordEnv) is empty; set it to the broker password (systemd: EnvironmentFile=/etc/ttaq/agent.env with ${t.passwordEnv}=...)`, { key: 'telemetry.passwordEnv' });
  }
  const tls = t.tls
    ? {
        ca: readPem(t.tls.ca, 'CA', 'telemetry.tls.ca'),
        cert: readPem(t.tls.cert, 'certificate', 'telemetry.tls.cert'),
        key: readPem(t.tls.key, 'key', 'telemetry.tls.key'),
        ...(t.tls.servername ? { servername: t.tls.servername } : {}),
      }
    : undefined;
  return {
    ...(t.username !== undefined ? { username: t.username, password } : {}),
    ...(tls ? { tls } : {}),
  };
}

export async function createTelemetrySink(c: AgentConfig, log: Logger): Promise<TelemetrySink> {
  if (!c.telemetry.enabled) return nullTelemetry;
  return mqttTelemetry(c, log);
}
