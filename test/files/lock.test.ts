// Lock files beside outputs: a live owner blocks a second taker with its pid named, a dead owner's
// lock is taken over, and a release removes only our own lock.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { acquireLock } from '../../sdk/files/index.ts';

test('a lock held by a live process is refused with its pid; a dead owner\'s is taken over; release removes only ours', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ttaq-lock-'));
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const path = join(dir, 'q.onnx.lock');
    const release = acquireLock(path, "--out 'q.onnx'");
    assert.equal(readFileSync(path, 'utf8'), String(process.pid));
    release();
    assert.ok(!existsSync(path), 'released');
    // another process holds it
    writeFileSync(path, String(sleeper.pid));
    assert.throws(() => acquireLock(path, "--out 'q.onnx'"), (e: unknown) => isTtaqError(e) && e.code === 'STATE_MISMATCH' && e.message.includes(`pid ${sleeper.pid}`) && e.message.includes("--out 'q.onnx'"));
    assert.equal(readFileSync(path, 'utf8'), String(sleeper.pid), 'a live owner keeps its lock');
    // its owner is gone (a finished process's pid), or the file is not a pid at all
    const gone = spawnSync('true').pid!;
    for (const stale of [String(gone), 'garbage']) {
      writeFileSync(path, stale);
      const again = acquireLock(path, "--out 'q.onnx'");
      assert.equal(readFileSync(path, 'utf8'), String(process.pid), `taken over from '${stale}'`);
      again();
    }
    // a release after someone else took the file leaves theirs alone
    const mine = acquireLock(path, 'x');
    writeFileSync(path, String(sleeper.pid));
    mine();
    assert.equal(readFileSync(path, 'utf8'), String(sleeper.pid));
  } finally {
    sleeper.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
