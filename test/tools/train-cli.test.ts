// `ttaq train` resumes the run it stopped: the checkpoint records the data (and --limit) and the
// files, the printed hint is complete, `--resume` alone continues, flags the checkpoint overrides
// are named, another --arch / --limit is refused, and the exported manifest describes the run that
// was made; the slice count (--workers) is recorded and kept unless another is given. Ctrl-C prints
// the hint too. Bad normalisation, slice and thread counts are refused up front.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { encodeCheckpoint, loadCheckpoint, type TrainConfig } from '../../sdk/train/index.ts';
import { run } from '../../tools/train.ts';

const dir = mkdtempSync(join(tmpdir(), 'ttaq-train-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the command with stderr captured. */
async function captured(argv: string[]): Promise<{ rc: number; err: string }> {
  const write = process.stderr.write;
  let err = '';
  process.stderr.write = ((s: string | Uint8Array) => { err += String(s); return true; }) as typeof process.stderr.write;
  try {
    return { rc: await run(argv), err };
  } finally {
    process.stderr.write = write;
  }
}

const usage = (re: RegExp) => (e: unknown): boolean => isTtaqError(e) && e.code === 'CLI_USAGE' && re.test(e.message);

test('a stopped run resumes on its own data and files with --resume alone; the manifest tells the run that was made', async () => {
  const out = join(dir, 'r.onnx');
  const ckpt = join(dir, 'r.ckpt');
  const first = await captured(['--arch', 'mobilenet', '--limit', '64', '--epochs', '2', '--batch', '32', '--out', out, '--max-epochs', '1']);
  assert.equal(first.rc, 0);
  assert.match(first.err, /mobilenet: .* 2 steps\/epoch, epochs 1\.\.2/);
  // the hint names the data and the limit (the checkpoint's default lies beside --out: not repeated)
  const hint = /continue with: (ttaq train .*)/.exec(first.err)?.[1];
  assert.equal(hint, `ttaq train --data fashion-mnist --limit 64 --out ${out} --resume ${ckpt}`);
  const ck = await loadCheckpoint(ckpt);
  assert.deepEqual((ck.meta.config as TrainConfig).run, { data: 'fashion-mnist', limit: 64, trainImages: 64, testImages: 64, out, checkpoint: ckpt, workers: 1 });

  // another network or other data is another run: refused, naming what the checkpoint's run is
  await assert.rejects(run(['--resume', ckpt, '--limit', '128']), usage(/continues a run of --arch mobilenet --data fashion-mnist --limit 64, not --limit 128; resume without it/));
  await assert.rejects(run(['--resume', ckpt, '--arch', 'resnet20']), usage(/continues a run of --arch mobilenet .*, not --arch resnet20/));

  // --resume alone: the 64 images, the recorded --out and checkpoint; ignored flags are named with
  // the value used, and a flag equal to the checkpoint's (5e-4 = 0.0005) is not
  const second = await captured(['--resume', ckpt, '--epochs', '5', '--lr', '0.01', '--wd', '5e-4']);
  assert.equal(second.rc, 0);
  const warnings = second.err.split('\n').filter((l) => l.startsWith('warning:'));
  assert.deepEqual(warnings, [
    `warning: --epochs 5 is ignored: the run in ${ckpt} keeps --epochs 2`,
    `warning: --lr 0.01 is ignored: the run in ${ckpt} keeps --lr 0.1`,
  ]);
  assert.match(second.err, /^mobilenet: .* 2 steps\/epoch, epochs 2\.\.2 \(resumed from/m);
  assert.match(second.err, new RegExp(`wrote ${out} `));
  const manifest = JSON.parse(readFileSync(join(dir, 'r.manifest.json'), 'utf8')) as { provenance: { command: string; metrics: Record<string, number> } };
  const command = manifest.provenance.command;
  for (const part of ['--arch mobilenet', '--data fashion-mnist --limit 64', '--epochs 2', '--batch 32', '--lr 0.1 ']) assert.ok(command.includes(part), `${part} in ${command}`);
  assert.equal(manifest.provenance.metrics.trainImages, 64);
  assert.equal(manifest.provenance.metrics.testImages, 64);
  assert.equal(manifest.provenance.metrics.epochs, 2);
});

test('a checkpoint that does not record its data resumes on the call\'s flags, checked by its steps per epoch', async () => {
  const out = join(dir, 'old.onnx');
  assert.equal((await captured(['--arch', 'mobilenet', '--limit', '64', '--epochs', '2', '--batch', '32', '--out', out, '--max-epochs', '1'])).rc, 0);
  // as written before the run was recorded
  const ck = await loadCheckpoint(join(dir, 'old.ckpt'));
  const { run: _, ...config } = ck.meta.config as TrainConfig;
  const old = join(dir, 'older.ckpt');
  writeFileSync(old, encodeCheckpoint({ ...ck, meta: { ...ck.meta, config } }));
  await assert.rejects(run(['--resume', old, '--out', out, '--limit', '128']), (e: unknown) => isTtaqError(e) && e.code === 'STATE_MISMATCH' &&
    e.message.includes('the run made 2 steps per epoch, but --data fashion-mnist --limit 128 gives 128 training images, 4 steps of --batch 32; pass the --data and --limit the run started with (64 to 95 training images)'));
  // with the flags it started with it resumes, as before the record (and records its run from now on)
  const resumed = await captured(['--resume', old, '--out', join(dir, 'old2.onnx'), '--limit', '64']);
  assert.equal(resumed.rc, 0, resumed.err);
  assert.match(resumed.err, /mobilenet: .* 2 steps\/epoch, epochs 2\.\.2 \(resumed from/);
  assert.equal(((await loadCheckpoint(join(dir, 'old2.ckpt'))).meta.config as TrainConfig).run?.limit, 64);

});

test('the slice count is recorded: --resume alone keeps it, another --workers is named and used', async () => {
  const out = join(dir, 'w.onnx');
  const ckpt = join(dir, 'w.ckpt');
  const recordedWorkers = async (): Promise<number | undefined> => ((await loadCheckpoint(ckpt)).meta.config as TrainConfig).run?.workers;
  const base = ['--arch', 'mobilenet', '--limit', '64', '--epochs', '3', '--batch', '32', '--out', out];
  assert.equal((await captured([...base, '--workers', '2', '--max-epochs', '1'])).rc, 0);
  assert.equal(await recordedWorkers(), 2);
  // the checkpoint this call writes records the count it ran with: the recorded 2, not the default 1
  const kept = await captured(['--resume', ckpt, '--max-epochs', '1']);
  assert.equal(kept.rc, 0, kept.err);
  assert.deepEqual(kept.err.split('\n').filter((l) => l.startsWith('warning:')), []);
  assert.equal(await recordedWorkers(), 2);
  const other = await captured(['--resume', ckpt, '--workers', '1']);
  assert.equal(other.rc, 0, other.err);
  assert.deepEqual(other.err.split('\n').filter((l) => l.startsWith('warning:')), [
    `warning: --workers 1 is used: the run in ${ckpt} had --workers 2; BN statistics are per slice, so the remaining epochs differ from the run's own (resume without --workers to keep 2)`,
  ]);
  assert.equal(await recordedWorkers(), 1);
});

test('Ctrl-C prints the command that continues from the last checkpoint, and it does', async () => {
  const out = join(dir, 'sig.onnx');
  const child = spawn(process.execPath, ['bin/ttaq.js', 'train', '--arch', 'mobilenet', '--limit', '64', '--batch', '32', '--epochs', '1000', '--out', out, '--workers', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  let sent = false;
  const exit = await new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.stderr.on('data', (b: Buffer) => {
      err += String(b);
      // once, after the first epoch's checkpoint (a second Ctrl-C is the default one: killed at once)
      if (!sent && /^epoch 1\/1000: train loss/m.test(err)) { sent = true; child.kill('SIGINT'); }
    });
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  assert.deepEqual(exit, { code: 130, signal: null }, err);
  const m = /interrupted; continue from the checkpoint of epoch (\d+) with: (ttaq train .*)/.exec(err);
  assert.ok(m, err);
  assert.equal(m[2], `ttaq train --data fashion-mnist --limit 64 --out ${out} --resume ${join(dir, 'sig.ckpt')} --workers 1`);
  const resumed = await captured([...m[2]!.split(' ').slice(2), '--max-epochs', '1']);
  assert.equal(resumed.rc, 0);
  assert.match(resumed.err, new RegExp(`2 steps/epoch, epochs ${Number(m[1]) + 1}\\.\\.1000 \\(resumed from`));
});

test('a std of 0, fewer than one slice and no threads are refused before any data loads (exit 2)', async () => {
  await assert.rejects(run(['--std', '0', '--data', 'no/such/data']), usage(/^--std 0: every value must be > 0/));
  await assert.rejects(run(['--std', '0.3,-1', '--data', 'no/such/data']), usage(/^--std 0\.3,-1: every value must be > 0/));
  await assert.rejects(run(['--workers', '0', '--data', 'no/such/data']), usage(/^--workers 0: expected an integer >= 1/));
  await assert.rejects(run(['--threads', '0', '--data', 'no/such/data']), usage(/^--threads 0: expected an integer >= 1/));
  await assert.rejects(run(['--max-epochs', '0', '--data', 'no/such/data']), usage(/^--max-epochs 0: expected an integer >= 1/));
  // with --resume too: a bad value is refused even where the checkpoint's would be used
  await assert.rejects(run(['--std', '0', '--resume', join(dir, 'none.ckpt')]), usage(/^--std 0/));
  const r = spawnSync(process.execPath, ['bin/ttaq.js', 'train', '--std', '0'], { encoding: 'utf8', env: { ...process.env, TTAQ_JSON_ERRORS: '' } });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--std 0: every value must be > 0 .*\[CLI_USAGE\]/);
  assert.equal(existsSync(join(dir, 'none.ckpt')), false);
});
