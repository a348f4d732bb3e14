// The quick commands of README.md, examples/README.md and docs/*.md run and exit 0. A quick block is a fenced `sh`
// block directly after a `<!-- quick -->` line; each non-empty, non-comment line is one command,
// run by bash in the repository root with $TMP set to a fresh temporary directory (shared by the
// commands of one file, in order, so a later command may use an earlier one's output).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TIMEOUT_MS = 60_000;

/** The quick commands of a Markdown text, in order. */
export function quickCommands(markdown: string): string[] {
  const out: string[] = [];
  const re = /<!--\s*quick\s*-->[ \t]*\r?\n```sh[ \t]*\r?\n([\s\S]*?)```/g;
  for (let m = re.exec(markdown); m; m = re.exec(markdown)) {
    for (const line of m[1]!.split(/\r?\n/)) {
      const l = line.trim();
      if (l && !l.startsWith('#')) out.push(l);
    }
  }
  return out;
}

test('quickCommands reads only marked sh blocks', () => {
  const md = 'x\n<!-- quick -->\n```sh\n# c\nnode a\n\nnode b\n```\n```sh\nnode c\n```\n<!-- quick -->\n```sh\nnode d\n```\n';
  assert.deepEqual(quickCommands(md), ['node a', 'node b', 'node d']);
});

const files = ['README.md', 'examples/README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)].filter((f) => existsSync(join(ROOT, f)));
const withCommands = files.map((f) => ({ file: f, commands: quickCommands(readFileSync(join(ROOT, f), 'utf8')) })).filter((x) => x.commands.length);

test('README.md has quick commands', () => {
  assert.ok(withCommands.some((x) => x.file === 'README.md' && x.commands.length >= 5), 'README.md should mark at least 5 quick commands');
});

for (const { file, commands } of withCommands) {
  test(`quick commands of ${file}`, async (t) => {
    const tmp = mkdtempSync(join(tmpdir(), 'ttaq-quick-'));
    try {
      for (const cmd of commands) {
        await t.test(cmd.length > 90 ? cmd.slice(0, 87) + '...' : cmd, () => {
          const r = spawnSync('bash', ['-c', cmd], { cwd: ROOT, env: { ...process.env, TMP: tmp }, timeout: TIMEOUT_MS, encoding: 'utf8', maxBuffer: 16 << 20 });
          const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.slice(-2000);
          assert.equal(r.signal, null, `${file}: '${cmd}' did not finish within ${TIMEOUT_MS / 1000} s\n${tail}`);
          assert.equal(r.status, 0, `${file}: '${cmd}' exited with ${r.status}\n${tail}`);
        });
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}
