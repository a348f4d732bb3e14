// The PyTorch baseline plumbing of `ttaq bench`: output parsing, and what happens when no Python
// with torch is there (an error value naming the way out, not a throw).
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { measurePytorch, parseBaselineOutput } from '../../tools/baselines/pytorch.ts';

test('parseBaselineOutput reads JSON lines and skips warnings', () => {
  const r = parseBaselineOutput([
    'UserWarning: something',
    '{"bench": "train", "batch": 128, "stepMs": 250, "imagesPerSec": 512, "torch": "2.x", "threads": 2}',
    '{"bench": "recon", "variant": "qdrop", "batch": 32, "secondsPer1000": 13.5, "torch": "2.x", "threads": 2}',
    '',
  ].join('\n'));
  assert.ok(r.ok);
  assert.equal(r.value.length, 2);
  assert.equal(r.value[0]!.imagesPerSec, 512);
  assert.equal(r.value[1]!.variant, 'qdrop');
});

test('parseBaselineOutput rejects rows without the fields ratios need, and empty output', () => {
  const bad = parseBaselineOutput('{"bench": "train", "stepMs": 250}');
  assert.ok(!bad.ok);
  assert.match(bad.error, /bench\/batch\/torch\/threads/);
  const none = parseBaselineOutput('nothing here\n');
  assert.ok(!none.ok);
  assert.match(none.error, /no figures/);
  const other = parseBaselineOutput('{"bench": "video", "batch": 1, "torch": "2", "threads": 1}');
  assert.ok(!other.ok);
});

test('measurePytorch without torch returns an error naming TTAQ_PYTORCH_PYTHON', async () => {
  const r = await measurePytorch(['train'], { threads: 1, python: '/nonexistent/python3' });
  assert.ok(!r.ok);
  assert.match(r.error, /TTAQ_PYTORCH_PYTHON/);
});

test('measurePytorch runs the script with the benches and threads asked for', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ttaq-pt-'));
  try {
    // a stand-in Python: answers the torch probe, then prints one figure (a shell echo of JSON, in
    // which $1 is the bench, $3 the threads and $* every argument after the script)
    const fakePython = async (name: string, json: string, stderr: readonly string[] = []): Promise<string> => {
      const f = join(dir, name);
      await writeFile(f, ['#!/bin/sh', 'if [ "$1" = "-c" ]; then echo 9.9; exit 0; fi', 'shift', ...stderr.map((l) => `echo "${l}" >&2`), `echo "${json.replaceAll('"', '\\"')}"`].join('\n'));
      await chmod(f, 0o755);
      return f;
    };
    const fake = await fakePython('python', '{"bench": "$1", "batch": 64, "msPerStep": 10, "torch": "9.9", "threads": $3}');
    const r = await measurePytorch(['tent'], { threads: 3, python: fake });
    assert.ok(r.ok, r.ok ? '' : r.error);
    assert.deepEqual(r.value.map((x) => [x.bench, x.threads, x.msPerStep]), [['tent', 3, 10]]);
    // recon-net: the iterations per block reach the script, and its per-block figures are kept
    const echo = await fakePython('python-echo', '{"bench": "$1", "batch": 32, "args": "$*", "seconds": 5, "blocks": [{"block": "stem", "seconds": 5}], "torch": "9.9", "threads": 2}',
      ['UserWarning: numpy', 'recon-net stem: 5.0 s']);
    const progress: string[] = [];
    const net = await measurePytorch(['recon-net'], { threads: 2, iterations: 7, python: echo, onProgress: (l) => progress.push(l) });
    assert.deepEqual(progress, ['recon-net stem: 5.0 s']); // its progress lines as they come, not its warnings
    assert.ok(net.ok, net.ok ? '' : net.error);
    assert.match((net.value[0] as unknown as { args: string }).args, /recon-net --threads 2 --iterations 7$/);
    assert.deepEqual(net.value[0]!.blocks, [{ block: 'stem', seconds: 5 }]);
    const failing = join(dir, 'python-fails');
    await writeFile(failing, '#!/bin/sh\nif [ "$1" = "-c" ]; then exit 0; fi\necho boom >&2; exit 3\n');
    await chmod(failing, 0o755);
    const f = await measurePytorch(['tent'], { threads: 1, python: failing });
    assert.ok(!f.ok);
    assert.match(f.error, /exit 3.*boom/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
