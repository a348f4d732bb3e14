// `ttaq fleet`: the fleet from the receiver's database (ls, show) and commands to a device (cmd).
import { checkCommandName, checkDeviceId, FleetStore, Operator, parseSetOptions, SET_OPTIONS_KEYS, type DeviceRow } from '../sdk/telemetry/index.ts';
import { TtaqError } from '../sdk/errors/index.ts';
import { EXIT, intFlag, parseFlags, positiveFlag, printJson } from './lib/cli.ts';
import { connectionFlags, connectionFromFlags } from '../sdk/telemetry/flags.ts';

export const summary = 'list devices, show one, or send a command (reset, pause, set-options, ...)';

const help = `usage:
  ttaq fleet ls --db fleet.sqlite [--json]
  ttaq fleet show <device> --db fleet.sqlite [--limit 20] [--json]
  ttaq fleet cmd <device> <name> [json-args] --broker URL [--timeout 10] [--json]
  ttaq fleet cmd <device> set-options [json-args] --set key=value [--set ...] --broker URL

Commands a device agent understands: reset {"scope":"adaptation"|"all"}, pause, resume,
set-options {"lr":0.0005,...}, snapshot {"label":"..."}, reload {"sha256":"...","path":"..."}.
set-options takes these keys (checked here before sending, as the agent checks them):
  ${SET_OPTIONS_KEYS.join(', ')}
e.g. --set batchSize=4 --set maxWaitMs=50 --set every=2 (values as JSON: numbers, true/false;
anything else is a string), merged over the JSON argument.
Exit code 0 when the device replied ok, 1 when it replied with an error or did not reply,
2 for bad usage (an unknown or invalid set-options key included).

  --db FILE           the database 'ttaq receive' writes (opened read-only)
  --broker URL        for cmd: mqtt://host:1883 or mqtts://host:8883
${connectionFlags.help}
  --timeout S         for cmd: seconds to wait for the reply (default 10)
  --set KEY=VALUE     for cmd set-options: one option to change (repeat for more)`;

/** `--set key=value` pairs into an object; the value is JSON when it parses as such, else a string. */
function setPairs(sets: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new TtaqError('CLI_USAGE', `--set '${s}' is not key=value; write e.g. --set batchSize=4`);
    const text = s.slice(eq + 1);
    let value: unknown = text;
    try {
      value = JSON.parse(text);
    } catch {
      // a bare word such as abl or robust
    }
    out[s.slice(0, eq)] = value;
  }
  return out;
}

const age = (ms: number) => {
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 90 ? `${s.toFixed(0)}s` : s < 5400 ? `${(s / 60).toFixed(0)}m` : `${(s / 3600).toFixed(1)}h`;
};
/** A device's clock as ISO text; a time no Date can hold (an older receiver stored it) as the number. */
const iso = (ms: number | null | undefined): string => {
  if (ms === null || ms === undefined) return '?';
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? `${ms} ms` : d.toISOString();
};
const n = (v: number | null | undefined, d = 2) => (v === null || v === undefined ? '-' : v.toFixed(d));

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

function lsRows(devs: DeviceRow[]): string[][] {
  return [
    ['DEVICE', 'STATUS', 'SEEN', 'FPS', 'ENTROPY', 'LOSS', 'DRIFT', 'MSGS', 'MISSING', 'DUPS', 'PROVIDER'],
    ...devs.map((d) => [d.device, d.status ?? '?', age(d.lastSeenMs), n(d.last?.fps, 1), n(d.last?.meanEntropy, 3), n(d.last?.adaptLoss, 3),
      n(d.last?.driftScore), String(d.received), String(d.missing), String(d.duplicates), d.provider ?? '-']),
  ];
}

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, {
    ...connectionFlags.options,
    db: { type: 'string' },
    json: { type: 'boolean', default: false },
    limit: { type: 'string', default: '20' },
    timeout: { type: 'string', default: '10' },
    set: { type: 'string', multiple: true, default: [] },
  }, help);
  if (!f) return EXIT.ok;
  const [sub, ...pos] = f.positionals;
  const v = f.values;
  const openDb = () => {
    if (!v.db) throw new TtaqError('CLI_USAGE', `--db is required for 'fleet ${sub}'\n\n${help}`);
    return new FleetStore(v.db, { readonly: true });
  };
  switch (sub) {
    case 'ls': {
      const store = openDb();
      const devs = store.devices();
      store.close();
      if (v.json) printJson(devs);
      else process.stdout.write(devs.length ? table(lsRows(devs)) : 'no devices yet\n');
      return EXIT.ok;
    }
    case 'show': {
      const device = pos[0];
      if (!device) throw new TtaqError('CLI_USAGE', `'fleet show' needs a device id\n\n${help}`);
      const store = openDb();
      const d = store.device(device);
      if (!d) {
        const known = store.devices().map((x) => x.device).join(', ') || 'none';
        store.close();
        throw new TtaqError('CLI_USAGE', `no device '${device}' in ${v.db} (known: ${known})`);
      }
      const limit = intFlag(v.limit, 'limit', 1)!;
      const out = { device: d, series: store.series(device, limit), events: store.events(device, limit), commands: store.commands(device, limit) };
      store.close();
      if (v.json) {
        printJson(out);
        return EXIT.ok;
      }
      const lines = [
        `device ${d.device}: ${d.status ?? 'unknown'} (since ${d.statusTs ? iso(d.statusTs) : '?'}), last seen ${age(d.lastSeenMs)} ago`,
        `messages ${d.received} stored, max seq ${d.maxSeq}, ${d.missing} missing, ${d.duplicates} duplicates, ${d.outOfOrder} out of order, ${d.invalid} invalid`,
        `provider ${d.provider ?? '-'}, model ${d.modelSha256 ?? '-'}`,
        '',
      ];
      process.stdout.write(lines.join('\n') + '\n');
      process.stdout.write(table([
        ['SEQ', 'TIME', 'FPS', 'P95MS', 'ENTROPY', 'CONF', 'LOSS', 'STEPS', 'RESETS', 'DRIFT'],
        ...out.series.map((p) => [String(p.seq), iso(p.ts).slice(11, 19), n(p.fps, 1), n(p.latencyP95Ms, 1), n(p.meanEntropy, 3),
          n(p.meanConfidence, 3), n(p.adaptLoss, 3), String(p.adaptSteps), String(p.resets), n(p.driftScore)]),
      ]));
      if (out.events.length) {
        process.stdout.write('\nevents (newest first):\n');
        for (const e of out.events) process.stdout.write(`  seq ${e.seq}  ${iso(e.ts)}  ${e.type}${e.event.message ? '  ' + e.event.message : ''}\n`);
      }
      return EXIT.ok;
    }
    case 'cmd': {
      const [device, name, argText] = pos;
      if (!device || !name) throw new TtaqError('CLI_USAGE', `'fleet cmd' needs a device and a command name\n\n${help}`);
      // checked before connecting: a name no topic can carry is a usage error, not a failed send
      checkDeviceId(device);
      checkCommandName(name);
      const timeoutMs = positiveFlag(v.timeout, 'timeout')! * 1000;
      let args: unknown = {};
      if (argText !== undefined) {
        try {
          args = JSON.parse(argText);
        } catch (e) {
          throw new TtaqError('CLI_USAGE', `command arguments are not JSON (${(e as Error).message}); quote them, e.g. '{"scope":"all"}'`);
        }
      }
      if (v.set.length) {
        if (name !== 'set-options') throw new TtaqError('CLI_USAGE', `--set is for 'fleet cmd <device> set-options'; pass ${name}'s arguments as JSON`);
        if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new TtaqError('CLI_USAGE', 'set-options arguments must be a JSON object to merge --set into');
        args = { ...(args as Record<string, unknown>), ...setPairs(v.set) };
      }
      // The same check the agent runs: a bad key stops here (exit 2) instead of at every device.
      if (name === 'set-options') args = parseSetOptions(args);
      const op = await Operator.connect(connectionFromFlags(v, help));
      try {
        const reply = await op.send(device, name, args, timeoutMs);
        if (v.json) printJson(reply);
        else if (reply.ok) process.stdout.write(`${device}: ${name} ok${reply.result === undefined ? '' : ' ' + JSON.stringify(reply.result)}\n`);
        else process.stderr.write(`${device}: ${name} failed: ${reply.error?.message ?? 'no reason given'} [${reply.error?.code ?? '?'}]\n`);
        return reply.ok ? EXIT.ok : EXIT.failed;
      } finally {
        await op.close();
      }
    }
    default:
      throw new TtaqError('CLI_USAGE', `unknown fleet subcommand '${sub ?? ''}': use ls, show or cmd\n\n${help}`);
  }
}
