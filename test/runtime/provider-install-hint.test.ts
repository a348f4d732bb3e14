// The one command that enables CUDA on x64 Linux: the log line for a missing GPU provider names it,
// and the docs that tell a GPU user what to run quote it word for word.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { GPU_INSTALL_COMMAND, resolveProviders, type RuntimeLogEvent } from '../../sdk/runtime/index.ts';

test('a skipped cuda provider names the install command; README.md and docs/JETSON.md quote the same', () => {
  const events: RuntimeLogEvent[] = [];
  assert.deepEqual(resolveProviders(['cuda', 'cpu'], ['cpu'], (e) => events.push(e)), ['cpu']);
  assert.equal(events.length, 1);
  assert.ok(events[0]!.message.includes(`'${GPU_INSTALL_COMMAND}'`), events[0]!.message);
  assert.match(events[0]!.message, /^provider 'cuda' skipped: .*; trying 'cpu'$/);
  for (const doc of ['README.md', 'docs/JETSON.md']) {
    const text = readFileSync(doc, 'utf8');
    assert.ok(text.includes(GPU_INSTALL_COMMAND), `${doc} gives the install command as the log line does`);
    assert.doesNotMatch(text, /npm install onnxruntime-node --onnxruntime-node-install/, `${doc}: no other form of it`);
  }
  // the flag the command passes is the one onnxruntime-node's install script reads
  const script = readFileSync('node_modules/onnxruntime-node/script/install-utils.js', 'utf8');
  assert.match(script, /npm_config_onnxruntime_node_install\b/);
  assert.match(readFileSync('.npmrc', 'utf8'), /^onnxruntime-node-install=skip$/m);
});
