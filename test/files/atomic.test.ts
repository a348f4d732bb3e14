// Atomic file writes: the new content replaces the old whole, and no temporary file is left.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { writeFileAtomic, writeFileAtomicSync } from '../../sdk/files/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'ttaq-files-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('writeFileAtomic and its sync twin replace a file and leave only it behind', async () => {
  const path = join(dir, 'state.json');
  writeFileSync(path, 'old');
  await writeFileAtomic(path, 'new');
  assert.equal(readFileSync(path, 'utf8'), 'new');
  writeFileAtomicSync(path, Uint8Array.of(65, 66));
  assert.equal(readFileSync(path, 'utf8'), 'AB');
  assert.deepEqual(readdirSync(dir), ['state.json']);
});
