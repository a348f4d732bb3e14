// The agent as a real process: a capture child process reading a generated video, SQLite, HTTP,
// signals. A kill -9 loses at most the steps since the last checkpoint; SIGTERM leaves a final one.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { decodeFakeState, getText, makeVideo, metric, spawnAgent, tmp, until } from './helpers.ts';

function setup(extra = '') {
  const dir = tmp();
  const video = join(dir, 'clip.avi');
  makeVideo(video, 30);
  const db = join(dir, 'agent.db');
  const config = join(dir, 'agent.yaml');
  writeFileSync(config, [
    'source:',
    `  uri: ${video}`,
    '  loop: true',
    'batch: { size: 4, maxWaitMs: 20 }',
    'adaptation: { checkpointEvery: 5 }',
    `storage: { path: ${db} }`,
    'http: { port: 0 }',
    extra,
  ].join('\n'));
  return { dir, db, config };
}

interface CkptRow { id: number; step: number; reason: string; state: Buffer; run_id: number }

function checkpoints(db: string): CkptRow[] {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  try {
    return d.prepare('SELECT id, step, reason, state, run_id FROM checkpoints ORDER BY id').all() as CkptRow[];
  } catch {
    return [];
  } finally {
    d.close();
  }
}

const count = (db: string): number => {
  try {
    return checkpoints(db).length;
  } catch {
    return 0;
  }
};

test('kill -9: the restarted agent resumes from the last checkpoint (step counter and parameters)', async () => {
  const { db, config } = setup();
  const a = spawnAgent(config, 'model-k');
  await a.waitFor((l) => typeof l['port'] === 'number');
  await until(() => count(db) >= 3, 30_000, 'three checkpoints');
  a.proc.kill('SIGKILL');
  const gone = await a.exited;
  assert.equal(gone.signal, 'SIGKILL');

  const rows = checkpoints(db);
  const last = rows.at(-1)!;
  assert.equal(last.reason, 'periodic');
  assert.ok(last.step >= 15);
  const saved = decodeFakeState(new Uint8Array(last.state));
  assert.equal(saved.step, last.step);

  const b = spawnAgent(config, 'model-k');
  const restored = await b.waitFor((l) => l['msg'] === 'fake runner restored');
  assert.equal(restored['restoredStep'], last.step, 'step counter restored');
  const params = restored['restoredParams'] as number[];
  saved.params.forEach((v, i) => assert.ok(Math.abs(params[i]! - v) < 1e-6, `parameter ${i}: ${params[i]} vs ${v}`));
  const port = (await b.waitFor((l) => typeof l['port'] === 'number'))['port'] as number;
  await until(async () => metric((await getText(port, '/metrics')).text, 'ttaq_agent_adaptation_step')! > last.step + 5, 30_000, 'steps beyond the restored one');
  b.proc.kill('SIGTERM');
  const end = await b.exited;
  assert.equal(end.code, 0, b.stderr.join(''));
  const after = checkpoints(db).at(-1)!;
  assert.equal(after.reason, 'shutdown');
  assert.ok(after.step > last.step + 5, `continued from ${last.step} to ${after.step}`);
});

test('SIGTERM leaves a final checkpoint and a closed run; a foreign model starts fresh', async () => {
  const { db, config } = setup();
  writeFileSync(config, (await import('node:fs')).readFileSync(config, 'utf8').replace('checkpointEvery: 5', 'checkpointEvery: 0'));
  const a = spawnAgent(config, 'model-s');
  const port = (await a.waitFor((l) => typeof l['port'] === 'number'))['port'] as number;
  await until(async () => metric((await getText(port, '/metrics')).text, 'ttaq_agent_adaptation_steps_total')! >= 6, 30_000, 'some steps');
  assert.equal(count(db), 0, 'no periodic checkpoints with checkpointEvery 0');
  a.proc.kill('SIGTERM');
  const end = await a.exited;
  assert.equal(end.code, 0, a.stderr.join(''));
  const rows = checkpoints(db);
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.reason, 'shutdown');
  const stopLine = a.lines.find((l) => l['msg'] === 'stopped')!;
  assert.equal(rows[0]!.step, stopLine['steps']);
  const d = new Database(db, { readonly: true });
  const run = d.prepare('SELECT ended_at, end_reason FROM runs ORDER BY id DESC LIMIT 1').get() as { ended_at: number; end_reason: string };
  d.close();
  assert.ok(run.ended_at > 0);
  assert.equal(run.end_reason, 'signal: SIGTERM');

  // Another model on the same database: the checkpoint does not fit, the agent starts fresh and logs why.
  const b = spawnAgent(config, 'model-other');
  const fresh = await b.waitFor((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('starting adaptation from the source parameters'));
  assert.match(fresh['reason'] as string, /no checkpoint of this model/);
  b.proc.kill('SIGTERM');
  assert.equal((await b.exited).code, 0);
});

test('a SIGTERM to the whole process group (Ctrl-C, systemd) stops the agent in order: the capture process is not seen failing or restarted', async () => {
  const { config } = setup();
  const a = spawnAgent(config, 'model-g', { ownGroup: true });
  await a.waitFor((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('source connected'), 30_000);
  await a.waitFor((l) => typeof l['port'] === 'number');
  process.kill(-a.proc.pid!, 'SIGTERM');
  const end = await a.exited;
  assert.equal(end.code, 0, a.stderr.join(''));
  const failures = a.lines.filter((l) => /capture process exited|source failed/.test(String(l['msg'])));
  assert.deepEqual(failures.map((l) => l['msg']), []);
  assert.ok(a.lines.some((l) => l['msg'] === 'stopped'));
});

test('ttaq agent --json: stdout holds the exit summary alone (the log goes to stderr)', () => {
  const dir = tmp();
  const video = join(dir, 'clip.avi');
  makeVideo(video, 12);
  const r = spawnSync(process.execPath, ['bin/ttaq.js', 'agent', '--source', video, '--max-frames', '8', '--json',
    '--set', 'http.enabled=false', '--set', `storage.path=${join(dir, 'agent.db')}`], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  const summary = JSON.parse(r.stdout) as { reason: string; framesProcessed: number };
  assert.equal(summary.framesProcessed, 8);
  assert.match(r.stderr, /"msg":"source started"/, 'the log is on stderr');
});
