// `ttaq demo`: the whole path on embedded defaults. Quantize the bundled FP32 ResNet-20 to W4A4
// (`ttaq quantize`, a child process), write a corrupted camera-like video over several domains
// (`ttaq corrupt --video`, a child process), start the embedded MQTT broker, the receiver with its
// SQLite database and dashboard, and run the edge agent over the video without and with
// adaptation (in this process, publishing telemetry to the broker). Prints accuracy per domain.
// Ctrl-C kills the child in flight, stops the agent and closes receiver, dashboard and broker.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readVideoLabels } from '../sdk/data/index.ts';
import { demoAgentConfig, DemoSettingsSchema, FULL_DEMO, QUICK_DEMO, resultTable, runAgentOverVideo, scoreByDomain, settingsKey, type DemoSettings, type DomainScore } from './lib/demo-run.ts';
import { TtaqError } from '../sdk/errors/index.ts';
import { Receiver, startDashboard, startEmbeddedBroker, type Dashboard, type EmbeddedBroker } from '../sdk/telemetry/index.ts';
import { EXIT, parseFlags, printJson } from './lib/cli.ts';
import { progressPrinter } from './lib/progress.ts';

export const summary = 'the whole path on the bundled model: quantize W4A4, corrupted video, agent with/without adaptation, telemetry';

const help = `usage: ttaq demo [--quick] [--fresh] [--dir runs/demo-...] [options]

Quantizes models/resnet20-fmnist.onnx to W4A4 with TTAQ (fast preset, ${FULL_DEMO.calibImages} calibration
images), writes a corrupted video (${FULL_DEMO.domains.join(', ')}; ${FULL_DEMO.perDomain} frames each,
severity ${FULL_DEMO.severity}), starts the embedded broker, the receiver (SQLite + dashboard) and runs the
agent over the video without and with adaptation (${FULL_DEMO.adaptMethod}). Prints accuracy per domain.

  --quick            a very short run (minmax quantization, 3 domains x ${QUICK_DEMO.perDomain} frames; about a minute)
  --dir DIR          run directory (default: the newest ./runs/demo-* made with the same settings,
                     else a new ./runs/demo-<timestamp>); the quantized model and the video in it are reused
  --fresh            a new run directory: quantize and write the video again
  --domains a,b,c    stream domains ('clean' or corruption names; default ${FULL_DEMO.domains.join(',')})
  --per-domain N     frames per domain
  --iterations N     reconstruction iterations per block (default: the fast preset's ~500; 100 is ~4x quicker)
  --calib-images N   calibration images
  --serve            keep the dashboard open after the table until Ctrl-C (default on a terminal,
                     except with --quick)
  --no-serve         exit after the table
  --json             print the result as JSON on stdout
Exit codes: 0 ok, 1 a step failed, 2 bad usage, 130 interrupted.`;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin', 'ttaq.js');
/** How to run ttaq from the working directory, for the commands the demo prints. */
const RUN = `node ${relative(process.cwd(), BIN) || BIN}`;

/** Everything that must be undone on exit or Ctrl-C, newest first. */
class Cleanup {
  private readonly steps: { name: string; fn: () => Promise<void> | void }[] = [];
  child: ChildProcess | undefined;
  add(name: string, fn: () => Promise<void> | void): void { this.steps.unshift({ name, fn }); }
  async run(): Promise<void> {
    const c = this.child;
    if (c && c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 3000);
      await new Promise<void>((r) => c.once('exit', () => r()));
      clearTimeout(t);
    }
    while (this.steps.length) {
      const s = this.steps.shift()!;
      try { await s.fn(); } catch (e) { process.stderr.write(`ttaq demo: closing ${s.name} failed: ${(e as Error).message}\n`); }
    }
  }
}

function runChild(cleanup: Cleanup, step: string, args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    cleanup.child = child;
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('error', (e) => rej(new TtaqError('DEMO_STEP_FAILED', `${step}: cannot start ${BIN}: ${e.message}`)));
    child.on('exit', (code, signal) => {
      cleanup.child = undefined;
      if (code === 0) res(out);
      else rej(new TtaqError('DEMO_STEP_FAILED', `${step} failed (${signal ?? `exit code ${code}`}): ${RUN} ${args.join(' ')}\nits messages are above; fix the cause or rerun with --fresh`));
    });
  });
}

function pickDir(settings: DemoSettings, flags: { dir?: string | undefined; fresh: boolean }): string {
  // under the working directory (the checkout's root for `npm run demo`): an installed package's
  // own folder may not be writable
  const runs = resolve('runs');
  if (flags.dir) return resolve(flags.dir);
  if (!flags.fresh && existsSync(runs)) {
    const key = settingsKey(settings);
    const dirs = readdirSync(runs).filter((d) => d.startsWith('demo-')).sort().reverse();
    for (const d of dirs) {
      try {
        if (readFileSync(join(runs, d, 'settings.json'), 'utf8') === key) return join(runs, d);
      } catch { /* not a demo dir */ }
    }
  }
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  return join(runs, `demo-${stamp}`);
}

const int = (v: string | undefined, name: string): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new TtaqError('CLI_USAGE', `--${name} ${v}: give a positive whole number`);
  return n;
};

export async function run(argv: string[]): Promise<number> {
  const f = parseFlags(argv, {
    quick: { type: 'boolean', default: false }, fresh: { type: 'boolean', default: false }, dir: { type: 'string' },
    domains: { type: 'string' }, 'per-domain': { type: 'string' }, iterations: { type: 'string' }, 'calib-images': { type: 'string' },
    serve: { type: 'boolean' }, 'no-serve': { type: 'boolean', default: false }, json: { type: 'boolean', default: false },
  }, help);
  if (!f) return EXIT.ok;
  const v = f.values;
  const base = v.quick ? QUICK_DEMO : FULL_DEMO;
  const iterations = int(v.iterations, 'iterations');
  const settings = DemoSettingsSchema.parse({
    ...base,
    ...(v.domains ? { domains: v.domains.split(',').map((s) => s.trim()).filter(Boolean) } : {}),
    ...(v['per-domain'] ? { perDomain: int(v['per-domain'], 'per-domain') } : {}),
    ...(iterations ? { iterations } : {}),
    ...(v['calib-images'] ? { calibImages: int(v['calib-images'], 'calib-images') } : {}),
  });
  const serve = v['no-serve'] ? false : v.serve ?? (!v.quick && process.stdout.isTTY === true && !v.json);
  const model = resolve(ROOT, settings.model);
  if (!existsSync(model)) throw new TtaqError('DEMO_STEP_FAILED', `the bundled model ${settings.model} is missing; restore it from git or train one with ttaq train (models/README.md)`);

  const dir = pickDir(settings, { dir: v.dir, fresh: v.fresh });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'settings.json'), settingsKey(settings));
  const rel = (p: string) => relative(process.cwd(), p) || '.';
  const say = (s: string) => process.stderr.write(`ttaq demo: ${s}\n`);
  say(`run directory ${rel(dir)}`);

  const cleanup = new Cleanup();
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) { process.stderr.write('ttaq demo: second signal, exiting now\n'); cleanup.child?.kill('SIGKILL'); process.exit(130); }
    interrupted = true;
    say('interrupted: stopping the step in flight and closing everything');
    void cleanup.run();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const check = () => { if (interrupted) throw new TtaqError('DEMO_STEP_FAILED', 'interrupted'); };
  const t0 = Date.now();
  try {
    // 1. quantize (reused when the run directory already holds it)
    const qModel = join(dir, `resnet20-w${settings.wBits}a${settings.aBits}.onnx`);
    let quant: Record<string, unknown> | undefined;
    const qReport = join(dir, 'quantize.json');
    if (existsSync(qModel) && existsSync(qReport)) {
      say(`1/4 reusing ${rel(qModel)} (--fresh redoes it)`);
      quant = JSON.parse(readFileSync(qReport, 'utf8')) as Record<string, unknown>;
    } else {
      say(`1/4 quantizing ${relative(ROOT, model)} to W${settings.wBits}A${settings.aBits} (${settings.method}${settings.method === 'minmax' || settings.method === 'mse' ? '' : settings.iterations ? `, ${settings.iterations} iterations per block` : `, ${settings.preset} preset`}, ${settings.calibImages} calibration images)`);
      const out = await runChild(cleanup, 'quantize', [
        'quantize', '--model', model, '--calib', 'fashion-mnist:train', '--calib-images', String(settings.calibImages),
        '--eval', 'fashion-mnist:test', '--eval-limit', String(settings.evalImages),
        '--w-bits', String(settings.wBits), '--a-bits', String(settings.aBits), '--method', settings.method,
        ...(settings.iterations ? ['--iterations', String(settings.iterations)] : ['--preset', settings.preset]),
        '--seed', String(settings.seed), '--state', join(dir, 'quantize.state.json'), '--out', qModel, '--json',
      ]);
      quant = JSON.parse(out) as Record<string, unknown>;
      writeFileSync(qReport, JSON.stringify(quant, null, 2));
    }
    check();

    // 2. corrupted video (reused when present)
    const video = join(dir, 'stream.mp4');
    const specPath = join(dir, 'stream.json');
    if (existsSync(video) && existsSync(video.replace(/\.mp4$/, '.labels.json'))) {
      say(`2/4 reusing ${rel(video)}`);
    } else {
      say(`2/4 writing a corrupted video: ${settings.domains.join(' -> ')}, ${settings.perDomain} frames each, severity ${settings.severity}, camera-like runs of one class`);
      writeFileSync(specPath, JSON.stringify({ format: 'ttaq-stream/1', seed: settings.seed, domains: settings.domains, severity: settings.severity, perDomain: settings.perDomain, order: { kind: 'runs', meanRun: 16 } }, null, 2));
      await runChild(cleanup, 'corrupt --video', ['corrupt', '--video', video, '--stream', specPath, '--size', String(settings.frameSize), '--seed', String(settings.seed), '--limit', String(Math.max(1000, settings.perDomain))]);
    }
    const labels = await readVideoLabels(video);
    check();

    // 3. broker, receiver, dashboard
    const broker: EmbeddedBroker = await startEmbeddedBroker({ port: 0 });
    cleanup.add('broker', () => broker.close());
    const fleetDb = join(dir, 'fleet.sqlite');
    const receiver = await Receiver.start({ broker: broker.url, db: fleetDb, clientId: 'ttaq-demo-receiver', log: (level, msg) => { if (level !== 'info') say(`receiver ${level}: ${msg}`); } });
    cleanup.add('receiver', () => receiver.close());
    const dash: Dashboard = await startDashboard({ store: receiver.store, port: 0, host: '127.0.0.1', stats: () => receiver.stats() });
    cleanup.add('dashboard', () => dash.close());
    say(`3/4 broker ${broker.url}, receiver storing into ${rel(fleetDb)}, dashboard ${dash.url}`);
    check();

    // 4. the agent, without then with adaptation (two devices in the fleet)
    const runs: Record<'source' | 'adapted', { scores: DomainScore[]; frames: number; steps: number; seconds: number }> = {} as never;
    for (const mode of ['source', 'adapted'] as const) {
      const db = join(dir, `agent-${mode}.db`);
      for (const s of ['', '-wal', '-shm']) rmSync(db + s, { force: true });
      const config = demoAgentConfig({ video, model: qModel, db, adapt: mode === 'adapted', settings, brokerUrl: broker.url, deviceId: `demo-${mode}` });
      say(`4/4 agent over the video ${mode === 'source' ? 'without adaptation' : `with adaptation (${settings.adaptMethod})`} as device demo-${mode}`);
      const progress = progressPrinter(process.stderr, false);
      const r = await runAgentOverVideo(config, {
        onFrames: (n) => progress({ stage: `agent ${mode}`, done: n, total: labels.frames }),
        register: (stop) => cleanup.add(`agent ${mode}`, stop),
      });
      check();
      progress({ stage: `agent ${mode}`, done: labels.frames, total: labels.frames, info: `${r.frames} frames, ${r.adaptSteps} adaptation steps, ${r.seconds.toFixed(1)} s` });
      check();
      runs[mode] = { scores: scoreByDomain(r.predictions, labels), frames: r.frames, steps: r.adaptSteps, seconds: r.seconds };
    }
    // let the last telemetry reach the receiver
    await new Promise((r) => setTimeout(r, 1500));
    const stats = receiver.stats();

    const table = resultTable(runs.source.scores, runs.adapted.scores);
    const qRep = quant?.report as { accuracy?: { fp32?: number; quantized?: number; images?: number }; seconds?: Record<string, number> } | undefined;
    const qSeconds = Object.values(qRep?.seconds ?? {}).reduce((x, y) => x + y, 0);
    const qAcc = qRep?.accuracy;
    if (v.json) {
      printJson({ dir, settings, quantize: quant, model: qModel, video, fleetDb, dashboard: serve ? dash.url : null, source: runs.source, adapted: runs.adapted, receiver: stats, seconds: (Date.now() - t0) / 1000 });
    } else {
      const o = process.stdout;
      o.write(`\nAccuracy of the W${settings.wBits}A${settings.aBits} model on the corrupted stream (severity ${settings.severity}), per domain:\n\n${table}\n\n`);
      if (qAcc?.quantized !== undefined) o.write(`Clean test accuracy: FP32 ${(100 * (qAcc.fp32 ?? NaN)).toFixed(1)} %, W${settings.wBits}A${settings.aBits} ${(100 * qAcc.quantized).toFixed(1)} % (${qAcc.images ?? settings.evalImages} images; quantization took ${qSeconds.toFixed(0)} s).\n`);
      o.write(`Adaptation steps: ${runs.adapted.steps}; agent time ${runs.source.seconds.toFixed(1)} s without, ${runs.adapted.seconds.toFixed(1)} s with adaptation.\n\n`);
      o.write(`Run directory   ${rel(dir)}\n`);
      o.write(`Quantized model ${rel(qModel)} (+ .int8.onnx, manifest beside it)\n`);
      o.write(`Video           ${rel(video)} (+ stream.labels.json)\n`);
      o.write(`Fleet database  ${rel(fleetDb)} (${stats.stored} messages stored from 2 devices)\n`);
      o.write(`Agent databases ${rel(join(dir, 'agent-source.db'))}, ${rel(join(dir, 'agent-adapted.db'))}\n`);
      o.write(`Dashboard       ${dash.url}${serve ? ' (open until Ctrl-C)' : ' (closed now; ttaq demo --serve keeps it open)'}\n\n`);
      o.write('Try next:\n');
      const next: [string, string][] = [
        ['the devices the receiver saw, and one device\'s telemetry', `fleet ls --db ${rel(fleetDb)}; ${RUN} fleet show demo-adapted --db ${rel(fleetDb)}`],
        ['the quantized model', `inspect ${rel(qModel)}`],
        ['the continual protocol: source vs BN-adapt vs TENT vs ABL on this model', `eval --model ${rel(qModel)} --method source,bn,tent,abl --limit 500`],
        ['the agent alone on this video (/metrics on :9464)', `agent --model ${rel(qModel)} --source ${rel(video)}`],
        ['another stream', 'demo --fresh --domains clean,snow,frost,fog --per-domain 200'],
        ['a shorter quantization (100 iterations per block, ~4x quicker, a little less accurate)', 'demo --fresh --iterations 100'],
      ];
      for (const [what, cmd] of next) o.write(`  # ${what}\n  ${RUN} ${cmd}\n`);
    }
    if (serve && !interrupted) {
      say(`dashboard ${dash.url} stays open; Ctrl-C stops`);
      await new Promise<void>((r) => { process.once('SIGINT', r); process.once('SIGTERM', r); });
    }
    return interrupted ? 130 : EXIT.ok;
  } catch (e) {
    if (interrupted) return 130;
    throw e;
  } finally {
    await cleanup.run();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
