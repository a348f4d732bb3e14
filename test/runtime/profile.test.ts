// summarizeProfile and `ttaq profile`: where a session's time went, from onnxruntime's own profile.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { GraphBuilder } from '../../sdk/onnx/builder.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import { createSession, summarizeProfile } from '../../sdk/runtime/index.ts';
import { model } from '../onnx/fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'ttaq-profile-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const kernel = (node: string, op: string, dur: number, shapes: number[][]) => ({ cat: 'Node', name: `${node}_kernel_time`, dur, args: { op_name: op, input_type_shape: shapes.map((s) => ({ float: s })) } });
const runEv = (dur: number) => ({ cat: 'Session', name: 'model_run', dur });

test('summarizeProfile: per-run means by node and by op type, most expensive first; the median run', () => {
  const events = [
    { cat: 'Session', name: 'session_initialization', dur: 5000 },
    runEv(100), kernel('a', 'Conv', 60, [[2, 3, 4, 4], [5, 3, 3, 3]]), kernel('b', 'Relu', 10, [[2, 5, 4, 4]]), kernel('c', 'Mul', 4, [[2, 5, 4, 4], []]),
    { cat: 'Node', name: 'a_fence_before', dur: 0 },
    runEv(140), kernel('a', 'Conv', 80, [[2, 3, 4, 4], [5, 3, 3, 3]]), kernel('b', 'Relu', 10, [[2, 5, 4, 4]]), kernel('c', 'Mul', 6, [[2, 5, 4, 4], []]),
    runEv(120), kernel('a', 'Conv', 70, [[2, 3, 4, 4], [5, 3, 3, 3]]), kernel('b', 'Relu', 16, [[2, 5, 4, 4]]), kernel('c', 'Mul', 5, [[2, 5, 4, 4], []]),
  ];
  const s = summarizeProfile(events);
  assert.equal(s.runs, 3);
  assert.equal(s.medianRunUs, 120);
  assert.equal(s.nodes, 3);
  assert.equal(s.kernelUsPerRun, (210 + 36 + 15) / 3);
  assert.deepEqual(s.ops.map((o) => [o.op, o.usPerRun, o.nodes]), [['Conv', 70, 1], ['Relu', 12, 1], ['Mul', 5, 1]]);
  assert.deepEqual(s.top[0], { node: 'a', op: 'Conv', usPerRun: 70, inputs: ['2x3x4x4', '5x3x3x3'] });
  assert.deepEqual(s.top[2]!.inputs, ['2x5x4x4', '']);
});

test('summarizeProfile: an even number of runs takes the mean of the middle two', () => {
  assert.equal(summarizeProfile([runEv(10), runEv(40), runEv(20), runEv(30)]).medianRunUs, 25);
});

test('summarizeProfile refuses what is no profile, or one without a run, with DATA_BAD_FORMAT naming the way out', () => {
  for (const [bad, re] of [[{ traceEvents: [] }, /TTAQ_ORT_PROFILE/], [[kernel('a', 'Conv', 1, [])], /no run/]] as const) {
    assert.throws(() => summarizeProfile(bad, 'p.json'), (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_FORMAT' && /^p\.json: /.test(e.message) && re.test(e.message));
  }
});

test('a real session profile: the graph\'s nodes and ops, one model_run per run; `ttaq profile` prints them and refuses a broken file', async () => {
  const b = new GraphBuilder('prof');
  b.input('x', 'float32', [4, 8]);
  const y = b.op1('Relu', [b.op1('Mul', ['x', b.constant(f32([8], [1, 2, 3, 4, 5, 6, 7, 8]), 'k')], {}, { name: 'scale' })], {}, { name: 'rect', outputNames: ['y'] });
  b.output(y, 'float32', [4, 8]);
  const s = await createSession(model(b), { providers: ['cpu'], profilePrefix: join(dir, 'real'), logger: () => {} });
  for (let i = 0; i < 3; i++) await s.run({ x: f32([4, 8], Array.from({ length: 32 }, (_, j) => j - 16)) });
  await s.release();
  const file = join(dir, readdirSync(dir).find((f) => f.startsWith('real_'))!);
  const sum = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')));
  assert.equal(sum.runs, 3);
  assert.deepEqual(sum.top.map((n) => n.node).sort(), ['rect', 'scale']);
  assert.deepEqual(sum.ops.map((o) => o.op).sort(), ['Mul', 'Relu']);
  assert.deepEqual(sum.top.find((n) => n.node === 'scale')!.inputs, ['4x8', '8']);

  const cli = spawnSync(process.execPath, ['bin/ttaq.js', 'profile', '--top', '1', file], { encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stderr);
  assert.match(cli.stdout, /: 3 runs, median run [\d.]+ ms, kernels [\d.]+ ms per run, 2 nodes/);
  assert.match(cli.stdout, /% +1 +Relu/);
  assert.equal(cli.stdout.split('\n').filter((l) => /\((4x8|4x8, 8)\)$/.test(l)).length, 1, '--top 1 lists one node');

  const broken = join(dir, 'broken.json');
  writeFileSync(broken, '[{"cat": "Session"');
  const bad = spawnSync(process.execPath, ['bin/ttaq.js', 'profile', broken], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /broken\.json: not JSON.*rerun the command.*\[DATA_BAD_FORMAT\]/);
});
