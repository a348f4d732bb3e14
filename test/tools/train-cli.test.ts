// `ttaq train` resumes the run it stopped: the checkpoint records the data (and --limit), the
// printed hint is complete, flags the checkpoint overrides are named, other data is refused, and
// the exported manifest describes the run that was made. Bad normalisation and slice counts are
// refused before any data loads.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { run } from '../../tools/train.ts';

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

test('a stopped run resumes on its own data with the hint it prints; the manifest tells the run that was made', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-train-'));
  try {
    const out = join(dir, 'r.onnx');
    const ckpt = join(dir, 'r.ckpt');
    const first = await captured(['--arch', 'mobilenet', '--limit', '64', '--epochs', '2', '--batch', '32', '--out', out, '--max-epochs', '1']);
    assert.equal(first.rc, 0);
    const hint = /continue with: (ttaq train .*)/.exec(first.err)?.[1];
    assert.ok(hint?.includes('--limit 64') && hint.includes(`--resume ${ckpt}`), first.err);
    // other data for the same run is refused, naming what the run trains on
    await assert.rejects(run(['--resume', ckpt, '--out', out, '--limit', '128']), (e: unknown) => isTtaqError(e) && e.code === 'CLI_USAGE' && /trains on --data fashion-mnist --limit 64, not +--limit 128/.test(e.message));
    // --resume alone continues on the 64 images; flags the checkpoint overrides are named
    const second = await captured(['--resume', ckpt, '--out', out, '--epochs', '5', '--lr', '0.01']);
    assert.equal(second.rc, 0);
    assert.match(second.err, /--epochs 5 is not used: the resumed run keeps its 2/);
    assert.match(second.err, /--lr 0\.01 is not used: the resumed run keeps its 0\.1/);
    assert.match(second.err, /mobilenet: .* 2 steps\/epoch, epochs 2\.\.2/);
    const manifest = JSON.parse(readFileSync(join(dir, 'r.manifest.json'), 'utf8')) as { provenance: { command: string; metrics: Record<string, number> } };
    assert.ok(manifest.provenance.command.includes('--arch mobilenet') && manifest.provenance.command.includes('--limit 64') && manifest.provenance.command.includes('--epochs 2'), manifest.provenance.command);
    assert.equal(manifest.provenance.metrics.trainImages, 64);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a std of 0 and fewer than one slice are refused before any data loads', async () => {
  await assert.rejects(run(['--std', '0', '--data', 'no/such/data']), (e: unknown) => isTtaqError(e) && e.code === 'CLI_USAGE' && /--std 0: every value must be above 0/.test(e.message));
  await assert.rejects(run(['--workers', '0', '--data', 'no/such/data']), (e: unknown) => isTtaqError(e) && e.code === 'CLI_USAGE' && /--workers 0/.test(e.message));
});
