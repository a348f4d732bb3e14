// `ttaq receive`: subscribes to the fleet, stores telemetry in SQLite, serves the dashboard.
import { Receiver, startDashboard, type Dashboard } from '../sdk/telemetry/index.ts';
import { TtaqError } from '../sdk/errors/index.ts';
import { EXIT, intFlag, parseFlags, positiveFlag } from './lib/cli.ts';
import { connectionFlags, connectionFromFlags } from '../sdk/telemetry/flags.ts';

export const summary = 'receive fleet telemetry into SQLite and serve the dashboard';

const help = `usage: ttaq receive --broker URL --db fleet.sqlite [--http 8080] [--share GROUP] [options]

Subscribes to ttaq/v1/+/{status,telemetry,events,cmd/...}, validates every payload, stores it once
per (device, seq) and acknowledges it only after the write. Runs until Ctrl-C.

  --broker URL        mqtt://host:1883 or mqtts://host:8883
  --db FILE           fleet database (created and migrated when needed)
  --http PORT         serve the dashboard and JSON API on this port (0 picks one)
  --http-host ADDR    dashboard interface (default 127.0.0.1)
  --share GROUP       MQTT 5 shared subscription $share/GROUP/...: receivers with the same GROUP
                      split the fleet (each needs its own --client-id)
  --client-id ID      persistent-session client id (default ttaq-receiver-<hostname>)
${connectionFlags.help}
  --json              JSON lines on stdout (started, then stats every --every seconds) instead of text
  --every S           status line interval (default 10)`;

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, {
    ...connectionFlags.options,
    db: { type: 'string' },
    http: { type: 'string' },
    'http-host': { type: 'string', default: '127.0.0.1' },
    share: { type: 'string' },
    'client-id': { type: 'string' },
    json: { type: 'boolean', default: false },
    every: { type: 'string', default: '10' },
  }, help);
  if (!f) return EXIT.ok;
  const v = f.values;
  if (!v.db) throw new TtaqError('CLI_USAGE', `--db is required (the fleet database file)\n\n${help}`);
  if (f.positionals.length) throw new TtaqError('CLI_USAGE', `unexpected argument '${f.positionals[0]}'\n\n${help}`);
  const conn = connectionFromFlags(v, help);
  // every flag is checked before connecting: a receiver that fails after it connected would hold
  // the fleet's session (and its messages) until it exits
  const httpPort = intFlag(v.http, 'http', 0, 65535);
  const every = positiveFlag(v.every, 'every')! * 1000;
  const receiver = await Receiver.start({
    ...conn,
    db: v.db,
    ...(v.share ? { share: v.share } : {}),
    ...(v['client-id'] ? { clientId: v['client-id'] } : {}),
    log: (level, msg) => { if (level !== 'info') process.stderr.write(`ttaq receive: ${level}: ${msg}\n`); },
  });
  let dash: Dashboard | undefined;
  if (httpPort !== undefined) {
    try {
      dash = await startDashboard({ store: receiver.store, port: httpPort, host: v['http-host'], stats: () => receiver.stats() });
    } catch (e) {
      await receiver.close();
      throw e;
    }
  }
  // --json lines go to stdout, to be piped; the text lines and warnings go to stderr
  const say = (o: Record<string, unknown>, text: string) => {
    if (v.json) process.stdout.write(JSON.stringify(o) + '\n');
    else process.stderr.write(`ttaq receive: ${text}\n`);
  };
  say({ event: 'started', broker: conn.broker, db: v.db, dashboard: dash?.url ?? null },
    `connected to ${conn.broker}, storing into ${v.db}${dash ? `, dashboard at ${dash.url}` : ''} (Ctrl-C stops)`);
  let last = { messages: -1, connected: true };
  const timer = setInterval(() => {
    const s = receiver.stats();
    // the text line is printed when something changed: new messages, or the connection's state
    if (!v.json && s.messages === last.messages && s.connected === last.connected) return;
    last = { messages: s.messages, connected: s.connected };
    say({ event: 'stats', ...s }, `${s.connected ? 'connected' : 'DISCONNECTED'}; ${s.stored} stored, ${s.duplicates} duplicates, ${s.invalid} invalid, ${s.statuses} status updates`);
  }, every);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  clearInterval(timer);
  await dash?.close();
  await receiver.close();
  return EXIT.ok;
}
