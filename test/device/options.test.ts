// Runtime changes: set-options (HTTP POST /options and the MQTT command's handler) and reload by URL
// (download into the model cache, SHA-256 checked against the manifest, the old model kept on failure).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { Agent } from '../../device/agent.ts';
import { parseAgentConfig, type AgentConfigInput } from '../../device/config.ts';
import { downloadModel, manifestUrlFor } from '../../device/download.ts';
import { memoryTelemetry } from '../../device/telemetry.ts';
import { TtaqError } from '../../sdk/errors/index.ts';
import { FakeRunner, FakeSource, tmp, until } from './helpers.ts';

const silent = pino({ level: 'silent' });
const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

/** An agent on fakes; the runner's options key is the adapter options' loss/norm (like sdk/adapt's). */
async function startAgent(input: AgentConfigInput = {}, o: { failOptions?: boolean } = {}) {
  const dir = tmp();
  const config = parseAgentConfig({ storage: { path: join(dir, 'agent.db') }, http: { port: 0 }, batch: { size: 4, maxWaitMs: 20 }, model: { cacheDir: join(dir, 'cache'), allowHttp: true }, ...input });
  const calls: { path: string; adaptOptions?: Record<string, unknown> }[] = [];
  const runners: FakeRunner[] = [];
  const telemetry = memoryTelemetry();
  const agent = await Agent.create(config, {
    logger: silent, telemetry,
    runnerFactory: async (m) => {
      calls.push(m);
      if (o.failOptions && m.adaptOptions?.['lr'] === 0.5) throw new TtaqError('CONFIG_INVALID', 'adapter options: lr 0.5 diverges');
      // A model file from the cache is named by its hash; its fake runner carries that hash.
      const file = m.path.endsWith('.onnx') && existsSync(m.path) ? readFileSync(m.path) : undefined;
      const key = `${m.adaptOptions?.['loss'] ?? ''}/${m.adaptOptions?.['norm'] ?? ''}`;
      const r = new FakeRunner('m', undefined, 0, { ...(file ? { sha256: sha(file) } : {}), optionsKey: key });
      runners.push(r);
      return r;
    },
    sourceFactory: (spec) => new FakeSource(spec, Infinity, 1),
  });
  await agent.start();
  return { agent, calls, runners, telemetry, dir, port: agent.httpPort! };
}

const post = async (port: number, path: string, body: unknown) => {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as { ok: boolean; result?: Record<string, unknown>; error?: { code: string; message: string } } };
};
const frames = (a: Agent) => a.status()['framesProcessed'] as number;

test('set-options: batching and adaptation settings apply from the next batch; adapter options rebuild it, keeping state that fits', async () => {
  const { agent, calls, runners, port } = await startAgent();
  await until(() => frames(agent) >= 16, 10_000, 'frames');

  const a = await post(port, '/options', { every: 2, maxWaitMs: 5, batchSize: 2, resetEvery: 1000, shiftThreshold: 6 });
  assert.equal(a.status, 200, JSON.stringify(a.body));
  assert.equal(a.body.result!['rebuilt'], false);
  const opts = agent.status()['options'] as Record<string, number>;
  assert.deepEqual([opts['every'], opts['maxWaitMs'], opts['batchSize'], opts['resetEvery'], opts['shiftThreshold']], [2, 5, 2, 1000, 6]);
  assert.equal(agent.status()['batchSize'], 2);
  // every 2nd batch adapts now: count over a stretch of batches
  const r0 = runners[0]!;
  const [s0, i0] = [r0.step, r0.inferCalls];
  await until(() => r0.step + r0.inferCalls - s0 - i0 >= 20, 10_000, '20 batches');
  const ds = r0.step - s0, di = r0.inferCalls - i0;
  assert.ok(Math.abs(ds - di) <= 2, `adapt ${ds} vs infer ${di} batches with every: 2`);

  // lr keeps the options key: the new adapter continues from the old one's state (step counter)
  const stepBefore = r0.step;
  const b = await post(port, '/options', { lr: 0.01 });
  assert.equal(b.status, 200, JSON.stringify(b.body));
  assert.deepEqual([b.body.result!['rebuilt'], b.body.result!['stateKept']], [true, true]);
  assert.deepEqual(calls.at(-1)!.adaptOptions, { lr: 0.01 });
  assert.equal(runners.length, 2);
  assert.ok(runners[1]!.step >= stepBefore, `state carried over: step ${runners[1]!.step} >= ${stepBefore}`);

  // loss changes the key: fresh state, said in the reply; earlier overrides stay
  const c = await post(port, '/options', { loss: 'entropy' });
  assert.equal(c.status, 200);
  assert.equal(c.body.result!['stateKept'], false);
  assert.match(String(c.body.result!['note']), /source parameters/);
  assert.deepEqual(calls.at(-1)!.adaptOptions, { lr: 0.01, loss: 'entropy' });
  const n = frames(agent);
  await until(() => frames(agent) > n + 8, 5000, 'frames on the rebuilt adapter');
  await agent.stop();
});

test('set-options refuses what cannot change at runtime, with the reason, and changes nothing', async () => {
  const { agent, port, runners } = await startAgent({}, { failOptions: true });
  await until(() => frames(agent) >= 8, 10_000, 'frames');
  const unknown = await post(port, '/options', { method: 'tent', every: 3 });
  assert.equal(unknown.status, 409);
  assert.match(unknown.body.error!.message, /'method' cannot change while the agent runs; edit agent\.yaml and restart \(runtime options: loss, norm, lr/);
  const big = await post(port, '/options', { batchSize: 16, every: 3 });
  assert.equal(big.status, 409);
  assert.match(big.body.error!.message, /batchSize 16 is over 4, the batch.size the capture queue was sized for at start/);
  const bad = await post(port, '/options', { lr: -1 });
  assert.match(bad.body.error!.message, /'lr'/);
  const empty = await post(port, '/options', {});
  assert.match(empty.body.error!.message, /at least one option/);
  // a rebuild that fails keeps the running adapter and applies none of the other options
  const fails = await post(port, '/options', { lr: 0.5, every: 3 });
  assert.equal(fails.status, 409);
  assert.match(fails.body.error!.message, /lr 0.5 diverges/);
  assert.equal(runners.length, 1);
  assert.equal((agent.status()['options'] as Record<string, number>)['every'], 1);
  const n = frames(agent);
  await until(() => frames(agent) > n + 8, 5000, 'still running');
  await agent.stop();

  const plain = await startAgent({ adaptation: { enabled: false } });
  const off = await plain.agent.command({ name: 'set-options', options: { lr: 0.01 } }).catch((e: Error) => e);
  assert.match((off as Error).message, /runs without adaptation/);
  const ok = (await plain.agent.command({ name: 'set-options', options: { maxWaitMs: 10 } })) as { applied: Record<string, number> };
  assert.deepEqual(ok.applied, { maxWaitMs: 10 });
  await plain.agent.stop();
});

test('resetEvery resets the adaptation state on schedule', async () => {
  const { agent, runners, telemetry } = await startAgent({ adaptation: { shift: { enabled: false } } });
  await agent.setOptions({ resetEvery: 5 });
  await until(() => runners[0]!.step >= 16, 10_000, '16 steps');
  assert.ok(runners[0]!.resets >= 3, `${runners[0]!.resets} resets in ${runners[0]!.step} steps`);
  assert.ok(telemetry.events.some((e) => e.type === 'reset' && e.reason === 'schedule'));
  await agent.stop();
});

/** A small HTTP server with a model and its manifest; `corrupt` serves other bytes than the manifest's hash. */
async function modelServer(model: Uint8Array, opts: { corrupt?: boolean; noManifest?: boolean } = {}): Promise<{ url: string; hits: string[]; server: Server }> {
  const hits: string[] = [];
  const manifest = JSON.parse(readFileSync('models/resnet20-fmnist.manifest.json', 'utf8')) as Record<string, unknown>;
  manifest['sha256'] = sha(model);
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    if (req.url === '/m/next.onnx') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(opts.corrupt ? Buffer.concat([Buffer.from(model), Buffer.from('x')]) : Buffer.from(model));
    } else if (req.url === '/m/next.manifest.json' && !opts.noManifest) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(manifest));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/m/next.onnx`, hits, server };
}

test('downloadModel: manifest first, hash checked, cached by hash; https only unless allowed', async () => {
  const dir = tmp();
  const bytes = new TextEncoder().encode('a model, as far as this test is concerned');
  const s = await modelServer(bytes);
  try {
    assert.equal(manifestUrlFor('https://h/x/model.onnx?sig=1'), 'https://h/x/model.manifest.json?sig=1');
    await assert.rejects(downloadModel(s.url, undefined, { cacheDir: dir }), /only https:\/\/ downloads are allowed \(set model.allowHttp: true/);
    await assert.rejects(downloadModel('ftp://h/m.onnx', undefined, { cacheDir: dir, allowHttp: true }), /only https/);
    await assert.rejects(downloadModel(s.url, 'f'.repeat(64), { cacheDir: dir, allowHttp: true }), /the command expected ffffffffffff/);
    const got = await downloadModel(s.url, sha(bytes), { cacheDir: dir, allowHttp: true });
    assert.equal(got.cached, false);
    assert.equal(got.path, join(dir, `${sha(bytes)}.onnx`));
    assert.deepEqual(new Uint8Array(readFileSync(got.path)), bytes);
    const again = await downloadModel(s.url, undefined, { cacheDir: dir, allowHttp: true });
    assert.equal(again.cached, true);
    assert.equal(s.hits.filter((h) => h.endsWith('.onnx')).length, 1, 'the model is fetched once');
    await assert.rejects(downloadModel(s.url, undefined, { cacheDir: join(dir, 'small'), allowHttp: true, maxBytes: 10 }), /over the 10-byte limit/);
  } finally {
    s.server.close();
  }
  const bad = await modelServer(bytes, { corrupt: true });
  try {
    await assert.rejects(downloadModel(bad.url, undefined, { cacheDir: join(dir, 'c2'), allowHttp: true }), (e: TtaqError) => e.code === 'STATE_MISMATCH' && /the download is corrupt/.test(e.message));
    assert.deepEqual(readdirSync(join(dir, 'c2')), [], 'no file left behind');
  } finally {
    bad.server.close();
  }
});

test('reload by URL: the agent swaps to the downloaded model; a failed download keeps the old one', async () => {
  const bytes = new TextEncoder().encode('the next model');
  const s = await modelServer(bytes);
  const missing = await modelServer(bytes, { noManifest: true });
  const { agent, telemetry, port, dir } = await startAgent();
  try {
    await until(() => frames(agent) >= 8, 10_000, 'frames');
    const old = (agent.status()['model'] as Record<string, string>)['sha256'];
    const fail = await post(port, '/reload', { url: missing.url });
    assert.equal(fail.status, 409);
    assert.equal(fail.body.error!.code, 'MODEL_DOWNLOAD_FAILED');
    assert.match(fail.body.error!.message, /manifest .*next\.manifest\.json: HTTP 404/);
    assert.equal((agent.status()['model'] as Record<string, string>)['sha256'], old, 'the old model runs on');
    const ok = await post(port, '/reload', { url: s.url, sha256: sha(bytes) });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.result!['sha256'], sha(bytes));
    assert.equal((agent.status()['model'] as Record<string, string>)['sha256'], sha(bytes));
    assert.ok(existsSync(join(dir, 'cache', `${sha(bytes)}.onnx`)));
    assert.deepEqual(telemetry.events.filter((e) => e.type === 'model_reload').map((e) => (e as { ok: boolean }).ok), [false, true]);
    const n = frames(agent);
    await until(() => frames(agent) > n + 8, 5000, 'frames on the downloaded model');
  } finally {
    await agent.stop();
    s.server.close();
    missing.server.close();
  }
});
