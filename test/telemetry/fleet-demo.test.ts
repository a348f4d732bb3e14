// examples/fleet-receiver/demo.ts stopped by a signal, while it publishes and while it serves:
// it exits and leaves no temporary folder behind.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEMO = join(ROOT, 'examples', 'fleet-receiver', 'demo.ts');

/** Starts the demo, waits for `ready` on stderr, sends `signal`; resolves with the exit and the data folder. */
function runAndSignal(args: string[], ready: RegExp, signal: NodeJS.Signals): Promise<{ code: number | null; dir: string; err: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', DEMO, ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    let sent = false;
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`demo did not get ready or exit in 60 s: ${err}`)); }, 60_000);
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (!sent && ready.test(err)) {
        sent = true;
        child.kill(signal);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      const dir = /data in (\S+)/.exec(err)?.[1] ?? '';
      resolvePromise({ code, dir, err });
    });
  });
}

test('SIGTERM while the devices publish: exit 143, temporary folder removed', async () => {
  const r = await runAndSignal(['--devices', '2', '--steps', '1000000'], /data in \S+\n/, 'SIGTERM');
  assert.equal(r.code, 143, r.err);
  assert.ok(r.dir.length > 0, r.err);
  assert.equal(existsSync(r.dir), false, `${r.dir} is left behind`);
});

test('SIGTERM while serving ends the serving: exit 0, temporary folder removed', async () => {
  const r = await runAndSignal(['--devices', '2', '--steps', '3', '--serve'], /serving; Ctrl-C stops/, 'SIGTERM');
  assert.equal(r.code, 0, r.err);
  assert.ok(r.dir.length > 0, r.err);
  assert.equal(existsSync(r.dir), false, `${r.dir} is left behind`);
});

// Ctrl-C goes through the same handler as SIGTERM; only the exit code differs (130, the shell's
// convention for an interrupted command), so a terminal user also leaves nothing in /tmp.
test('SIGINT while the devices publish: exit 130, temporary folder removed', async () => {
  const r = await runAndSignal(['--devices', '2', '--steps', '1000000'], /data in \S+\n/, 'SIGINT');
  assert.equal(r.code, 130, r.err);
  assert.ok(r.dir.length > 0, r.err);
  assert.equal(existsSync(r.dir), false, `${r.dir} is left behind`);
});
