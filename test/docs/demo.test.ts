// `ttaq demo`: the per-domain scoring, a whole --quick run (quantize, video, broker, receiver,
// agent without and with adaptation), and Ctrl-C leaving no child process behind.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { resultTable, scoreByDomain } from '../../tools/lib/demo-run.ts';
import type { VideoLabels } from '../../sdk/data/index.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'ttaq.js');

const labels = (l: number[], domain: number[], names: string[]): VideoLabels => ({
  format: 'ttaq-video-labels/1', video: 'x.mp4', fps: 30, frameHeight: 28, frameWidth: 28, height: 28, width: 28, channels: 1,
  frames: l.length, labels: l, domainNames: names, domain,
});

test('scoreByDomain counts per domain in stream order; missing predictions are misses', () => {
  const v = labels([1, 2, 3, 4, 5, 6], [1, 1, 1, 0, 0, 0], ['clean', 'fog']);
  const preds = [{ seq: 0, label: 1 }, { seq: 1, label: 0 }, { seq: 2, label: 3 }, { seq: 3, label: 4 }, { seq: 5, label: 6 }, { seq: 9, label: 1 }];
  const s = scoreByDomain(preds, v);
  assert.deepEqual(s.map((r) => r.domain), ['fog', 'clean', 'all']);
  assert.deepEqual(s.map((r) => [r.frames, r.correct]), [[3, 2], [3, 2], [6, 4]]);
  assert.ok(Math.abs(s[2]!.accuracy - 4 / 6) < 1e-12);
  const table = resultTable(s, s.map((r) => ({ ...r, accuracy: r.accuracy + 0.1 })));
  assert.match(table, /fog\s+3\s+66\.7 %\s+76\.7 %\s+\+10\.0/);
});

test('scoreByDomain rejects a domain index the sidecar does not name', () => {
  assert.throws(() => scoreByDomain([], labels([1], [2], ['clean'])), (e: Error & { code?: string }) => e.code === 'DATA_BAD_SPEC' && /domain index 2/.test(e.message));
});

test('ttaq demo --quick runs the whole path and prints accuracy per domain', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-demo-'));
  try {
    const r = spawnSync(process.execPath, [BIN, 'demo', '--quick', '--dir', dir, '--no-serve', '--json'], { cwd: ROOT, encoding: 'utf8', timeout: 110_000 });
    assert.equal(r.status, 0, r.stderr.slice(-3000));
    const out = JSON.parse(r.stdout) as {
      source: { scores: { domain: string; frames: number; accuracy: number }[]; steps: number };
      adapted: { scores: { domain: string; frames: number; accuracy: number }[]; steps: number };
      receiver: { stored: number }; quantize: { report: { accuracy: { quantized: number } } };
    };
    assert.deepEqual(out.source.scores.map((s) => s.domain), ['clean', 'gaussian_noise', 'contrast', 'all']);
    assert.deepEqual(out.source.scores.map((s) => s.frames), [48, 48, 48, 144]);
    // the bundled model is ~89 % accurate on clean images; W4A4 minmax keeps most of it
    assert.ok(out.quantize.report.accuracy.quantized > 0.7, `quantized clean accuracy ${out.quantize.report.accuracy.quantized}`);
    assert.ok(out.source.scores[0]!.accuracy > 0.6, `clean stream accuracy ${out.source.scores[0]!.accuracy}`);
    assert.equal(out.source.steps, 0);
    assert.ok(out.adapted.steps >= 144 / 8 - 1, `adaptation steps ${out.adapted.steps}`);
    assert.ok(out.receiver.stored > 0, 'the receiver stored telemetry from the agents');
    for (const f of ['resnet20-w4a4.onnx', 'resnet20-w4a4.int8.onnx', 'stream.mp4', 'stream.labels.json', 'fleet.sqlite', 'agent-adapted.db']) assert.ok(existsSync(join(dir, f)), f);
    // a rerun reuses the model and the video
    const again = spawnSync(process.execPath, [BIN, 'demo', '--quick', '--dir', dir, '--no-serve', '--json'], { cwd: ROOT, encoding: 'utf8', timeout: 110_000 });
    assert.equal(again.status, 0, again.stderr.slice(-3000));
    assert.match(again.stderr, /1\/4 reusing .*resnet20-w4a4\.onnx/);
    assert.match(again.stderr, /2\/4 reusing .*stream\.mp4/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Ctrl-C during the demo kills its child process and exits 130', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-demo-int-'));
  try {
    // a slow quantization (TTAQ reconstruction) so that the child is surely running when interrupted
    const p = spawn(process.execPath, [BIN, 'demo', '--dir', dir, '--no-serve', '--iterations', '2000', '--calib-images', '32'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    const deadline = Date.now() + 40_000;
    let children: number[] = [];
    while (Date.now() < deadline && children.length === 0) {
      await new Promise((r) => setTimeout(r, 300));
      if (!/1\/4 quantizing/.test(err)) continue;
      const ps = spawnSync('ps', ['-o', 'pid=', '--ppid', String(p.pid)], { encoding: 'utf8' });
      children = ps.stdout.split(/\s+/).filter(Boolean).map(Number);
    }
    assert.ok(children.length > 0, `the quantize child did not start:\n${err.slice(-2000)}`);
    p.kill('SIGINT');
    assert.equal(await exited, 130, err.slice(-2000));
    await new Promise((r) => setTimeout(r, 200));
    for (const pid of children) {
      assert.throws(() => process.kill(pid, 0), `child ${pid} still running`);
    }
    assert.match(err, /interrupted/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

