// The agent's benchmark and soak harnesses (device/bench.ts, device/soak.ts) on fakes: the
// steady-state accounting, CPU and memory sampling, and the summary statistics.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { agentBenchFigures, benchAgentConfig, measureAgentRun, processCpuMs } from '../../device/bench.ts';
import { parseAgentConfig } from '../../device/config.ts';
import { processRssMb, soakAgent, soakSampleLine, soakSummary, summarize, type SoakSample } from '../../device/soak.ts';
import { FakeRunner, FakeSource, tmp } from './helpers.ts';

test('summarize: min/median/max after the first minute and the least-squares slope per minute', () => {
  const t = Array.from({ length: 61 }, (_, i) => i * 10); // 10 minutes, a sample every 10 s
  const rising = t.map((x) => (x < 60 ? 50 + x : 100 + 0.5 * (x / 60))); // warm-up jump, then +0.5 MB/min
  const s = summarize(t, rising);
  assert.ok(Math.abs(s.slopeMbPerMin - 0.5) < 1e-9, `slope ${s.slopeMbPerMin}`);
  assert.ok(Math.abs(s.min - 100.5) < 1e-9, `min ${s.min} (warm-up samples left out)`);
  assert.ok(Math.abs(s.max - 105) < 1e-9, `max ${s.max}`);
  assert.ok(s.lateDriftMb > 1 && s.lateDriftMb < 2, `late drift ${s.lateDriftMb}`);
  const flat = summarize(t, t.map((x) => 120 + (x % 20 === 0 ? 1 : -1)));
  assert.ok(Math.abs(flat.slopeMbPerMin) < 0.05, `flat slope ${flat.slopeMbPerMin}`);
  assert.ok(flat.median >= 119 && flat.median <= 121 && flat.min === 119 && flat.max === 121);
  // short runs: all samples
  assert.equal(summarize([0, 10, 20], [1, 2, 3]).min, 1);
});

test('/proc readers give this process its own CPU time and resident memory', () => {
  const cpu = processCpuMs(process.pid);
  const rss = processRssMb(process.pid);
  assert.ok(cpu >= 0 && Number.isFinite(cpu), `cpu ${cpu}`);
  assert.ok(Math.abs(rss - process.memoryUsage().rss / 1048576) < 64, `rss ${rss}`);
  assert.ok(Number.isNaN(processRssMb(2 ** 30)));
});

test('measureAgentRun: steady-state frames/s after the warm-up, per-batch timings, latencies', async () => {
  const dir = tmp();
  const config = benchAgentConfig({ video: join(dir, 'none.mp4'), model: 'm.onnx', db: join(dir, 'a.db'), adapt: true, batch: 4, method: 'abl', maxFrames: 120, predictionLog: true });
  const r = await measureAgentRun(config, 20, { runnerFactory: async () => new FakeRunner('m'), sourceFactory: (spec) => new FakeSource(spec, Infinity, 0) });
  assert.equal(r.model.length, 25, '100 frames after a 20-frame warm-up in batches of 4');
  assert.equal(r.latencies.length, 100);
  assert.ok(r.fps > 0 && Number.isFinite(r.fps), `fps ${r.fps}`);
  assert.ok(r.cpuMsPerFrame >= 0 && Number.isFinite(r.cpuMsPerFrame), `cpu ${r.cpuMsPerFrame}`);
  assert.ok(Number.isNaN(r.captureCpuMsPerFrame), 'a fake source has no capture process');
  assert.ok(r.startupMs > 0);
});

test('soakAgent: samples memory on a schedule, stops on time, summarises', async () => {
  const dir = tmp();
  const config = parseAgentConfig({ storage: { path: join(dir, 'a.db') }, batch: { size: 4, maxWaitMs: 20 }, http: { enabled: false }, log: { level: 'warn' } });
  const seen: number[] = [];
  const r = await soakAgent(config, {
    minutes: 0.04, sampleEverySec: 0.4, onSample: (s) => seen.push(s.t),
    deps: { runnerFactory: async () => new FakeRunner('m'), sourceFactory: (spec) => new FakeSource(spec, Infinity, 2) },
  });
  assert.ok(r.samples.length >= 5 && r.samples.length <= 9, `${r.samples.length} samples in 2.4 s at 0.4 s`);
  assert.equal(seen.length, r.samples.length);
  assert.ok(r.frames > 50, `${r.frames} frames`);
  assert.ok(r.adaptSteps > 10);
  assert.ok(r.rss.min > 10 && r.rss.max < 4096 && r.rss.min <= r.rss.median && r.rss.median <= r.rss.max);
  assert.match(r.exit, /soak time over/);
  assert.match(soakSummary(r), /agent RSS: +min/);
  // RSS splits into V8's committed heap and the rest, so a soak tells a GC resize from a native leak
  for (const x of r.samples) assert.ok(x.heapTotalMb >= x.heapUsedMb && x.heapTotalMb < x.rssMb, `heap ${x.heapUsedMb}/${x.heapTotalMb} rss ${x.rssMb}`);
  assert.ok(r.native.median > 0 && r.native.median < r.rss.median && r.native.min <= r.native.max, 'native is RSS less the V8 heap');
  assert.match(soakSummary(r), /native \(RSS - V8 committed\): +min/);
  // the last sample comes after the agent (and any capture process) stopped: said so, not NaN
  assert.equal(r.samples.at(-1)!.captureNote, 'capture process stopped with the agent');
  for (const x of r.samples) assert.doesNotMatch(soakSampleLine(x), /NaN/);
  assert.match(soakSummary(r), /capture RSS: +not measured \(no capture process\)/, 'a fake source has none');
  assert.doesNotMatch(soakSummary(r), /NaN/);
});

test('soakSampleLine: the capture RSS as a number, or left out with the reason', () => {
  const s: SoakSample = { t: 90, rssMb: 120.04, heapUsedMb: 20, heapTotalMb: 30, externalMb: 1, arrayBuffersMb: 1, captureRssMb: 181.26, frames: 2700, adaptSteps: 300 };
  assert.equal(soakSampleLine(s), 'soak 1.5 min: rss 120.0 MB, heap 20.0 of 30.0 MB (V8), capture rss 181.3 MB, 2700 frames, 300 steps');
  const last = soakSampleLine({ ...s, captureRssMb: NaN, captureNote: 'capture process stopped with the agent' });
  assert.match(last, /capture rss not measured \(capture process stopped with the agent\), 2700 frames/);
  assert.doesNotMatch(last, /NaN/);
});

test('agentBenchFigures: frames/s against the model alone, and latency, in the shape ttaq bench prints', () => {
  const row = { adapt: true, batch: 8, agentFps: 180, modelFps: 200, overhead: 0.1, latencyP50Ms: 70, latencyP95Ms: 90, collectMs: 1, modelMs: 38, afterMs: 0.04, modelOnlyMs: 40, startupMs: 1800, agentCpuMsPerFrame: 2.3, captureCpuMsPerFrame: 0.3, modelCpuMsPerFrame: 2.2, cpuOverhead: 0.18, frames: 800, reps: 3 };
  const f = agentBenchFigures([row]);
  assert.equal(f.length, 2);
  assert.equal(f[0]!.unit, 'frames/s');
  assert.ok(Math.abs(f[0]!.ratio! - 0.9) < 1e-12);
  assert.match(f[0]!.name, /with adaptation, batch 8/);
  assert.match(f[0]!.note!, /capture 0\.300 ms/);
  assert.equal(f[1]!.value, 70);
});
