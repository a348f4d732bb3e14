// `ttaq broker`: the embedded aedes MQTT broker, standalone (MQTT 3.1.1; sessions in memory).
import { readPem, startEmbeddedBroker } from '../sdk/telemetry/index.ts';
import { TtaqError } from '../sdk/errors/index.ts';
import { EXIT, intFlag, parseFlags } from './lib/cli.ts';

export const summary = 'run the embedded MQTT broker (aedes) for a small fleet or a test';

const help = `usage: ttaq broker [--port 1883] [--host 127.0.0.1] [--tls-cert FILE --tls-key FILE [--tls-ca FILE]]

Runs an in-process MQTT 3.1.1 broker until Ctrl-C. Sessions, retained status and queued QoS 1
messages are kept in memory (lost when it stops). For a fleet use Mosquitto or EMQX (docs/TELEMETRY.md).

  --port N        TCP port (default 1883; 0 picks a free one)
  --host ADDR     interface (default 127.0.0.1; 0.0.0.0 for every interface)
  --tls-cert/--tls-key FILE   serve mqtts:// with this certificate and key (PEM)
  --tls-ca FILE   require client certificates signed by this CA
  --json          print {"url": ...} once listening`;

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, {
    port: { type: 'string', default: '1883' },
    host: { type: 'string', default: '127.0.0.1' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-ca': { type: 'string' },
    json: { type: 'boolean', default: false },
  }, help);
  if (!f) return EXIT.ok;
  if (f.positionals.length) throw new TtaqError('CLI_USAGE', `unexpected argument '${f.positionals[0]}' (the port is --port ${f.positionals[0]})\n\n${help}`);
  const port = intFlag(f.values.port, 'port', 0, 65535)!;
  const { 'tls-cert': cert, 'tls-key': key, 'tls-ca': ca } = f.values;
  if ((cert === undefined) !== (key === undefined)) throw new TtaqError('CLI_USAGE', '--tls-cert and --tls-key go together');
  const tls = cert && key
    ? {
      cert: readPem(cert, 'certificate', '--tls-cert')!,
      key: readPem(key, 'key', '--tls-key')!,
      ...(ca ? { ca: readPem(ca, 'CA', '--tls-ca')!, requestCert: true } : {}),
    }
    : undefined;
  const broker = await startEmbeddedBroker({ port, host: f.values.host, ...(tls ? { tls } : {}) });
  if (f.values.json) process.stdout.write(JSON.stringify({ url: broker.url, port: broker.port }) + '\n');
  else process.stderr.write(`ttaq broker: listening on ${broker.url} (Ctrl-C stops)\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await broker.close();
  return EXIT.ok;
}
