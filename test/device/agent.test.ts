import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { after, test } from 'node:test';
import pino from 'pino';
import { TtaqError } from '../../sdk/errors/index.ts';
import { Agent } from '../../device/agent.ts';
import { parseAgentConfig, type AgentConfigInput } from '../../device/config.ts';
import { AgentStore } from '../../device/store.ts';
import { memoryTelemetry } from '../../device/telemetry.ts';
import { decodeFakeState, FakeRunner, FakeSource, getText, metric, tmp, until } from './helpers.ts';

const silent = pino({ level: 'silent' });

// A failed assertion must not leave an agent (its HTTP server, its timers) keeping the test process alive.
const started: Agent[] = [];
after(async () => { for (const a of started) await a.stop().catch(() => undefined); });

async function startAgent(input: AgentConfigInput, opts: { runners?: Map<string, FakeRunner>; total?: number; failOn?: string } = {}) {
  const dir = tmp();
  const config = parseAgentConfig({
    storage: { path: join(dir, 'agent.db') },
    http: { port: 0 },
    batch: { size: 4, maxWaitMs: 20 },
    telemetry: { intervalSec: 0.1 },
    ...input,
  });
  const runners = opts.runners ?? new Map<string, FakeRunner>();
  let source: FakeSource | undefined;
  const telemetry = memoryTelemetry();
  const agent = await Agent.create(config, {
    logger: silent,
    telemetry,
    runnerFactory: async ({ path }) => {
      if (opts.failOn && path.includes(opts.failOn)) throw new TtaqError('ONNX_READ_FAILED', `cannot read model '${path}': no such file`);
      const r = new FakeRunner(basename(path));
      runners.set(path, r);
      return r;
    },
    sourceFactory: (spec) => (source = new FakeSource(spec, opts.total ?? Infinity, 1)),
  });
  started.push(agent);
  await agent.start();
  return { agent, source: source!, telemetry, runners, config, dir };
}

test('/healthz and /metrics report frames, latency, adaptation, provider and memory', async () => {
  const { agent, source, telemetry } = await startAgent({ adaptation: { checkpointEvery: 5 } });
  const port = agent.httpPort!;
  await until(() => (agent.status()['framesProcessed'] as number) >= 40, 10_000, '40 frames');

  const h = await getText(port, '/healthz');
  assert.equal(h.status, 200);
  const hb = JSON.parse(h.text) as Record<string, unknown>;
  assert.equal(hb['status'], 'ok');
  assert.ok((hb['framesProcessed'] as number) >= 40);
  assert.deepEqual((hb['model'] as Record<string, unknown>)['provider'], 'cpu');

  const m = await getText(port, '/metrics');
  assert.equal(m.status, 200);
  const t = m.text;
  assert.ok(metric(t, 'ttaq_agent_frames_processed_total')! >= 40);
  assert.ok(metric(t, 'ttaq_agent_adaptation_steps_total')! >= 10, 'adapts every batch by default');
  assert.ok(metric(t, 'ttaq_agent_checkpoints_total')! >= 1);
  assert.equal(metric(t, 'ttaq_agent_up'), 1);
  assert.match(t, /ttaq_agent_batch_latency_seconds\{quantile="0\.5"\} [0-9.e-]+\n/);
  assert.match(t, /ttaq_agent_frame_latency_seconds\{quantile="0\.99"\} [0-9.e-]+\n/);
  assert.match(t, /ttaq_agent_model_info\{model="resnet20-fmnist\.onnx",sha256="[0-9a-f]{64}",provider="cpu",method="fake"\} 1/);
  assert.ok(metric(t, 'ttaq_agent_memory_bytes', '{kind="rss"}')! > 10e6);
  assert.match(t, /# TYPE ttaq_agent_fps gauge/);
  assert.match(t, /ttaq_agent_frames_dropped_total 0/);

  await until(() => telemetry.reports.length >= 2, 5000, 'telemetry reports');
  const rep = telemetry.reports.at(-1)!;
  assert.equal(rep.provider, 'cpu');
  assert.equal(rep.classHistogram.length, 4);
  assert.ok(telemetry.events.some((e) => e.type === 'checkpoint'));

  // A source that drops out makes the agent unhealthy (503) with the reason.
  source.connected = false;
  const down = await getText(port, '/healthz');
  assert.equal(down.status, 503);
  assert.equal((JSON.parse(down.text) as Record<string, unknown>)['status'], 'source-disconnected');
  source.connected = true;
  assert.equal((await getText(port, '/nope')).status, 404);
  await agent.stop();
});

test('pause and resume over HTTP; a failing batch is counted and survived', async () => {
  const { agent, runners } = await startAgent({});
  const port = agent.httpPort!;
  await until(() => (agent.status()['framesProcessed'] as number) >= 8, 10_000, 'frames');
  assert.equal((await getText(port, '/pause', 'POST')).status, 200);
  const h = JSON.parse((await getText(port, '/healthz')).text) as Record<string, unknown>;
  assert.equal(h['status'], 'paused');
  const frozen = agent.status()['framesProcessed'] as number;
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(agent.status()['framesProcessed'], frozen, 'no frames while paused');
  assert.equal((await getText(port, '/resume', 'POST')).status, 200);
  await until(() => (agent.status()['framesProcessed'] as number) > frozen, 10_000, 'frames after resume');

  const r = [...runners.values()][0]!;
  r.failNext = true;
  await until(() => metric(agent.metricsText(), 'ttaq_agent_errors_total')! >= 1, 5000, 'error counted');
  const after = agent.status()['framesProcessed'] as number;
  await until(() => (agent.status()['framesProcessed'] as number) > after, 5000, 'frames after the failure');
  assert.equal((await getText(port, '/pause')).status, 405, 'control needs POST');
  await agent.stop();
});

test('periodic and shutdown checkpoints; restore at start only for the same model, also after another model ran', async () => {
  const first = await startAgent({ adaptation: { checkpointEvery: 5 } });
  await until(() => ((first.agent.status()['adaptation'] as Record<string, number>)['adaptSteps']!) >= 12, 10_000, 'steps');
  const exit = await first.agent.stop('signal', 'SIGTERM');
  assert.equal(exit.reason, 'signal');
  const runner = [...first.runners.values()][0]!;
  const db = join(first.dir, 'agent.db');
  let st = AgentStore.open(db);
  const last = st.latestCheckpoint()!;
  assert.equal(last.reason, 'shutdown');
  assert.equal(last.step, runner.step);
  assert.deepEqual(Array.from(decodeFakeState(last.state).params), Array.from(runner.params));
  assert.ok(st.checkpointCount() >= 3, 'periodic ones kept (3 per model)');
  assert.match(st.runs(1)[0]!.endReason!, /^signal: SIGTERM/);
  st.close();

  // Same database, same model: the step counter and parameters come back.
  const config2 = { storage: { path: db } };
  const again = await startAgent(config2);
  await until(() => again.runners.size > 0, 5000, 'runner');
  const r2 = [...again.runners.values()][0]!;
  assert.ok(r2.step >= runner.step, `restored step ${r2.step} >= ${runner.step}`);
  await again.agent.stop();

  // Another model: starts fresh and says why.
  const other = await startAgent({ ...config2, model: { path: '/models/other.onnx' } });
  const r3 = [...other.runners.values()][0]!;
  assert.ok(r3.step < runner.step, 'fresh state for another model');
  await other.agent.stop();
  st = AgentStore.open(db);
  assert.ok(st.events(50).some((e) => e.kind === 'restore' && /fresh start: no checkpoint of this model/.test(e.message)));
  st.close();

  // Back to the first model: its own checkpoint comes back, though the other model's is newer.
  const back = await startAgent(config2);
  await until(() => back.runners.size > 0, 5000, 'runner');
  const r4 = [...back.runners.values()][0]!;
  assert.ok(r4.step >= r2.step, `restored step ${r4.step} >= ${r2.step} after the other model ran`);
  await back.agent.stop();
});

test('a signal during start-up stops the agent cleanly once start-up is done', async () => {
  const dir = tmp();
  const config = parseAgentConfig({ storage: { path: join(dir, 'agent.db') }, http: { enabled: false }, batch: { size: 4, maxWaitMs: 20 } });
  let release!: () => void;
  const loading = new Promise<void>((r) => { release = r; });
  const agent = await Agent.create(config, {
    logger: silent, telemetry: memoryTelemetry(),
    // a model that takes its time to load, as a TensorRT engine build does
    runnerFactory: async () => { await loading; return new FakeRunner('slow'); },
    sourceFactory: (spec) => new FakeSource(spec, Infinity, 1),
  });
  const starting = agent.start();
  const stopped = agent.stop('signal', 'SIGINT');
  release();
  await starting;
  const exit = await stopped;
  assert.equal(exit.reason, 'signal');
  const st = AgentStore.open(join(dir, 'agent.db'));
  assert.match(st.runs(1)[0]!.endReason!, /^signal: SIGINT/, 'the run is recorded as ended');
  st.close();
});

test('a second agent on the same database is refused while the first runs; a killed one does not count', async () => {
  const first = await startAgent({});
  const db = join(first.dir, 'agent.db');
  await assert.rejects(
    Agent.create(parseAgentConfig({ storage: { path: db }, http: { enabled: false } }), { logger: silent, telemetry: memoryTelemetry() }),
    (e: unknown) => e instanceof TtaqError && e.code === 'CONFIG_INVALID' && /in use by another agent \(pid \d+/.test(e.message),
  );
  await first.agent.stop();
  // a run left open by an agent that was killed (its pid no longer runs) is no obstacle
  const st = AgentStore.open(db);
  st.db.prepare('INSERT INTO runs (started_at, pid, host, config) VALUES (?, ?, ?, ?)').run(Date.now(), 2 ** 22 + 12345, hostname(), '{}');
  st.close();
  const next = await startAgent({ storage: { path: db } });
  await next.agent.stop();
});

test('reload swaps the model between batches; a failed reload keeps the old one', async () => {
  const { agent, telemetry } = await startAgent({}, { failOn: 'broken' });
  const port = agent.httpPort!;
  await until(() => (agent.status()['framesProcessed'] as number) >= 8, 10_000, 'frames');
  const same = await getText(port, '/reload', 'POST');
  assert.equal(same.status, 200, 'reloading the same path works');
  const res = await fetch(`http://127.0.0.1:${port}/reload`, { method: 'POST', body: JSON.stringify({ path: '/models/broken.onnx' }) });
  assert.equal(res.status, 409);
  const body = (await res.json()) as { error: { code: string; message: string } };
  assert.equal(body.error.code, 'ONNX_READ_FAILED');
  const ok = await fetch(`http://127.0.0.1:${port}/reload`, { method: 'POST', body: JSON.stringify({ path: '/models/next.onnx' }) });
  assert.equal(ok.status, 200);
  const model = (agent.status()['model'] as Record<string, string>);
  assert.equal(model['name'], 'next.onnx');
  const before = agent.status()['framesProcessed'] as number;
  await until(() => (agent.status()['framesProcessed'] as number) > before, 5000, 'frames on the new model');
  assert.deepEqual(telemetry.events.filter((e) => e.type === 'model_reload').map((e) => (e as { ok: boolean }).ok), [true, false, true]);
  assert.ok(metric(agent.metricsText(), 'ttaq_agent_model_reload_failures_total') === 1);
  await agent.stop();
});

test('adaptation every k batches; a finite file ends the agent after all frames', async () => {
  const { agent, runners } = await startAgent({ adaptation: { every: 3, shift: { enabled: false } } }, { total: 48 });
  const exit = await agent.done();
  assert.equal(exit.reason, 'source-ended');
  assert.equal(exit.framesProcessed, 48);
  const r = [...runners.values()][0]!;
  const batches = r.step + r.inferCalls;
  assert.ok(batches >= 12, 'batches of at most 4 frames');
  assert.equal(r.step, Math.ceil(batches / 3), 'adapting on batches 0, 3, 6, ...');
});

test('an HTTP port already in use is a config error naming http.port and the way out', async () => {
  const { createServer } = await import('node:net');
  const { AgentHttp } = await import('../../device/http.ts');
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  const port = (taken.address() as { port: number }).port;
  try {
    const h = new AgentHttp({ host: '127.0.0.1', port, control: false }, { health: () => ({ ok: true, body: {} }), metrics: () => '', status: () => ({}), command: async () => null });
    await assert.rejects(h.start(), (e: unknown) => e instanceof TtaqError && e.code === 'CONFIG_INVALID' && /http\.port/.test(e.message) && /free port/.test(e.message) && e.message.includes(String(port)));
  } finally {
    await new Promise((r) => taken.close(r));
  }
});
