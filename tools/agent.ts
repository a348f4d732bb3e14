// `ttaq agent`: the edge agent. Reads frames (file, RTSP, V4L2, GStreamer/CSI), runs the model with
// test-time adaptation, keeps its state in SQLite, serves /healthz and /metrics, reports to MQTT.
// SIGTERM / SIGINT stop it gracefully (final checkpoint and report); a second signal exits at once.
// SIGHUP reloads the model from its configured path.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Agent, agentLogger } from '../device/agent.ts';
import { DEFAULT_VIDEO, detectSourceKind, loadAgentConfig, type AgentConfig } from '../device/config.ts';
import { TtaqError } from '../sdk/errors/index.ts';
import { EXIT, parseFlags, printJson } from './lib/cli.ts';

export const summary = 'run the edge agent: capture, infer, adapt, checkpoint, serve /metrics';

const HELP = `usage: ttaq agent [--config agent.yaml] [--set key=value ...] [options]

Runs the edge agent until the source ends, --max-frames is reached, or SIGTERM/SIGINT.

options:
  --config <file>      agent config (YAML or JSON); without it the defaults run the bundled
                       model on data/stream.mp4 (see examples/deploy-to-jetson/agent.yaml)
  --set <key=value>    override one config key, e.g. --set batch.size=4 (repeatable; the value
                       is YAML: quote text that looks like a number, --set 'telemetry.deviceId="42"')
  --source <uri>       shortcut for --set source.uri=<uri> (file, rtsp://, /dev/video0 or its
                       index 0, GStreamer)
  --model <file.onnx>  shortcut for --set model.path=<file>
  --max-frames <n>     stop after n frames
  --print-config       print the resolved config as JSON and exit
  --json               print the exit summary (or the soak report) as JSON
  --soak-minutes <m>   soak run: m minutes on a looped file paced at its frame rate (a camera's
                       pace; without a video of its own, 800 Fashion-MNIST frames at 30 fps),
                       memory sampled every --sample-every seconds (default 10); prints
                       min/median/max and the slope of RSS and heap (the goal: <= 250 MB, flat)
  -h, --help           this text

signals: SIGTERM/SIGINT stop gracefully (twice: at once), SIGHUP reloads the model.
exit codes: 0 stopped or source ended, 1 failed (source gave up, model error), 2 bad config.`;

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, {
    config: { type: 'string' },
    set: { type: 'string', multiple: true },
    source: { type: 'string' },
    model: { type: 'string' },
    'max-frames': { type: 'string' },
    'print-config': { type: 'boolean' },
    json: { type: 'boolean' },
    'soak-minutes': { type: 'string' },
    'sample-every': { type: 'string' },
  }, HELP);
  if (!f) return EXIT.ok;
  const sets = [...(f.values.set ?? [])];
  if (f.values.source) sets.push(`source.uri=${JSON.stringify(f.values.source)}`);
  if (f.values.model) sets.push(`model.path=${JSON.stringify(f.values.model)}`);
  if (f.values['max-frames']) sets.push(`maxFrames=${f.values['max-frames']}`);
  const config = loadAgentConfig(f.values.config, sets);
  if (f.values['print-config']) {
    printJson(config);
    return EXIT.ok;
  }
  if (f.values['soak-minutes'] !== undefined) return soak(config, f.values['soak-minutes'], f.values['sample-every'], f.values.json === true);

  // A video file that is not there at the start is a wrong path, not a camera that will come back:
  // say so now instead of retrying it forever (a file that goes away later is retried as configured).
  if (detectSourceKind(config.source) === 'file' && !existsSync(config.source.uri)) {
    const made = config.source.uri === resolve(DEFAULT_VIDEO) ? ` (the default; make it with: ttaq corrupt --video ${DEFAULT_VIDEO} --stream continual)` : '';
    throw new TtaqError('CONFIG_INVALID', `source.uri: video file '${config.source.uri}' not found${made}; give an existing file with --source, or a camera (/dev/video0, rtsp://..., a GStreamer pipeline)`);
  }
  // With --json, stdout carries the exit summary alone (for a pipe into jq); the log goes to stderr.
  const agent = await Agent.create(config, f.values.json ? { logger: agentLogger(config, 2) } : {});
  let signals = 0;
  const onStop = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      agent.log.warn(`second ${sig}: exiting without cleanup`);
      process.exit(EXIT.failed);
    }
    agent.log.info(`${sig}: stopping`);
    void agent.stop('signal', sig);
  };
  const onHup = () => {
    agent.log.info('SIGHUP: reloading the model');
    agent.reload().catch(() => { /* logged and reported by the agent */ });
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', onHup);
  try {
    await agent.start();
    const exit = await agent.done();
    if (f.values.json) printJson(exit);
    return exit.reason === 'source-failed' || exit.reason === 'error' ? EXIT.failed : EXIT.ok;
  } finally {
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
    process.off('SIGHUP', onHup);
  }
}

/** `--soak-minutes`: the soak run of device/soak.ts, with progress lines on stderr. */
async function soak(config: AgentConfig, minutesFlag: string, everyFlag: string | undefined, json: boolean): Promise<number> {
  const minutes = Number(minutesFlag);
  const every = everyFlag === undefined ? 10 : Number(everyFlag);
  if (!(minutes > 0)) throw new TtaqError('CLI_USAGE', `--soak-minutes ${minutesFlag}: give a positive number of minutes, e.g. 10`);
  if (!(every > 0)) throw new TtaqError('CLI_USAGE', `--sample-every ${everyFlag}: give a positive number of seconds`);
  const { soakAgent, soakSampleLine, soakSummary, soakVideo } = await import('../device/soak.ts');
  let cleanup = (): void => {};
  let c = config;
  if (detectSourceKind(c.source) === 'file' && !existsSync(c.source.uri)) {
    if (c.source.uri !== resolve(DEFAULT_VIDEO)) throw new TtaqError('CONFIG_INVALID', `source.uri: video '${c.source.uri}' not found; give an existing file (ttaq corrupt --video writes one) or leave the default for a generated one`);
    const v = soakVideo();
    cleanup = v.cleanup;
    c = { ...c, source: { ...c.source, uri: v.path } };
  }
  const ac = new AbortController();
  const onStop = () => ac.abort();
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  try {
    const r = await soakAgent(c, {
      minutes, sampleEverySec: every, signal: ac.signal,
      onSample: (s) => process.stderr.write(soakSampleLine(s) + '\n'),
    });
    if (json) printJson(r);
    else process.stdout.write(soakSummary(r) + '\n');
    return r.exit.startsWith('error') || r.exit.startsWith('source-failed') ? EXIT.failed : EXIT.ok;
  } finally {
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
    cleanup();
  }
}
