// The shared command-line plumbing: an output path is made writable (or refused) before work starts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isTtaqError, TtaqError } from '../../sdk/errors/index.ts';
import { EXIT, prepareOutputFile, reportError } from '../../tools/lib/cli.ts';
import { run as evalRun } from '../../tools/eval.ts';

const dir = mkdtempSync(join(tmpdir(), 'ttaq-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('prepareOutputFile makes the missing folders, refuses a folder and a path under a file, naming the flag', () => {
  prepareOutputFile(join(dir, 'x', 'y', 'out.json'), '--out');
  assert.ok(statSync(join(dir, 'x', 'y')).isDirectory());
  mkdirSync(join(dir, 'taken'));
  assert.throws(() => prepareOutputFile(join(dir, 'taken'), '--out'), (e) => isTtaqError(e) && e.code === 'CLI_USAGE' && e.message.startsWith("--out '") && e.message.includes('is a folder'));
  writeFileSync(join(dir, 'file'), '');
  assert.throws(() => prepareOutputFile(join(dir, 'file', 'out.json'), '--plot'), (e) => isTtaqError(e) && e.code === 'CLI_USAGE' && e.message.startsWith('--plot') && e.message.includes('cannot create its folder'));
});

test('an output path on /proc fails at once with exit 2 naming it (Node 20\'s recursive mkdir spun there forever)', { skip: !existsSync('/proc/self') && 'no /proc here' }, () => {
  // in a child process: the old failure was a synchronous endless loop no in-process timeout ends
  const out = '/proc/ttaq-no-such/results.json';
  const r = spawnSync(process.execPath, ['bin/ttaq.js', 'eval', '--model', 'models/resnet20-fmnist.onnx', '--out', out, '--quiet'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, TTAQ_JSON_ERRORS: '' } });
  assert.equal(r.signal, null, `ttaq eval did not finish within 60 s: ${r.stderr}`);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--out '\/proc\/ttaq-no-such\/results\.json': cannot create its folder \('\/proc' takes no new folders.*choose a writable location \[CLI_USAGE\]/);
  // a folder that is there but takes no files: found by opening the file, as permission bits do not tell (root)
  assert.throws(() => prepareOutputFile('/proc/ttaq-results.json', '--plot'), (e) => isTtaqError(e) && e.code === 'CLI_USAGE' && e.message.startsWith("--plot '/proc/ttaq-results.json': cannot write there"));
  // the test write leaves nothing behind, and a file that is there is kept as it is
  prepareOutputFile(join(dir, 'probe.json'), '--out');
  assert.equal(existsSync(join(dir, 'probe.json')), false);
  writeFileSync(join(dir, 'kept.json'), 'old');
  prepareOutputFile(join(dir, 'kept.json'), '--out');
  assert.equal(readFileSync(join(dir, 'kept.json'), 'utf8'), 'old');
});

test('ttaq eval checks --out and --plot after its flags and before any work', async () => {
  const model = 'models/resnet20-fmnist.onnx';
  mkdirSync(join(dir, 'res.json'));
  await assert.rejects(evalRun(['--model', model, '--out', join(dir, 'res.json'), '--quiet']), (e: unknown) => isTtaqError(e) && e.code === 'CLI_USAGE' && e.message.includes('is a folder'));
  // a bad flag is reported first and makes no folder
  await assert.rejects(evalRun(['--model', model, '--plot', join(dir, 'early', 'p.png'), '--severity', '9', '--quiet']), (e: unknown) => isTtaqError(e) && e.message.includes('--severity'));
  assert.equal(existsSync(join(dir, 'early')), false);
  // a good path in a new folder: made, and the run goes on to the data (a folder that is not there)
  await assert.rejects(evalRun(['--model', model, '--plot', join(dir, 'plots', 'p.png'), '--data', join(dir, 'no-such-data'), '--quiet']), (e: unknown) => isTtaqError(e) && !e.message.includes('--plot'));
  assert.ok(statSync(join(dir, 'plots')).isDirectory());
});

test('ttaq agent refuses a video file that is not there at the start (a wrong path, not a camera that comes back)', async () => {
  const { run: agentRun } = await import('../../tools/agent.ts');
  const missing = join(dir, 'no-such-stream.mp4');
  await assert.rejects(agentRun(['--source', missing, '--set', 'http.enabled=false', '--set', `storage.path=${join(dir, 'agent.db')}`]),
    (e: unknown) => isTtaqError(e) && e.code === 'CONFIG_INVALID' && e.message.includes(`'${missing}' not found`) && e.message.includes('/dev/video0'));
  assert.equal(existsSync(join(dir, 'agent.db')), false, 'refused before the agent opened its store');
});

test("ttaq train's default output is runs/train/<arch>-<data>.onnx, never a bundled model in models/", async () => {
  const { defaultOut } = await import('../../tools/train.ts');
  assert.equal(defaultOut('resnet20', 'fashion-mnist'), join('runs', 'train', 'resnet20-fmnist.onnx'));
  assert.equal(defaultOut('mobilenet', '/data/my pets/'), join('runs', 'train', 'mobilenet-my_pets.onnx'));
});

test('errors that mean "change the input" exit 2, failures of the run exit 1', (t) => {
  const write = process.stderr.write;
  t.after(() => { process.stderr.write = write; });
  process.stderr.write = (() => true) as typeof process.stderr.write; // reportError prints; keep the test output clean
  for (const code of ['CLI_USAGE', 'MANIFEST_INVALID', 'QUANT_BAD_MODEL', 'QUANT_NO_GRAD_RULE', 'STATE_MISMATCH'] as const) {
    assert.equal(reportError(new TtaqError(code, 'x')), EXIT.usage, code);
  }
  for (const code of ['INTERNAL', 'RUNTIME_RUN_FAILED'] as const) assert.equal(reportError(new TtaqError(code, 'x')), EXIT.failed, code);
  assert.equal(reportError(new Error('boom')), EXIT.failed);
  process.stderr.write = write;
});
