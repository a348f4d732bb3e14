// Matching an image folder's class sub-folders to a model's labels.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { FASHION_MNIST_LABELS } from '../../sdk/manifest/index.ts';
import { labelFolderName, matchClassFolders, writeImageFolder } from '../../sdk/data/index.ts';
import { graySet } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'ttaq-classmatch-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('folders named after labels map by name, a / written as _; a subset is fine', () => {
  const m = matchClassFolders(['Bag', 'T-shirt_top'], FASHION_MNIST_LABELS);
  assert.equal(m.kind, 'names');
  assert.equal(m.kind === 'names' && m.classes.indexOf('T-shirt_top'), 0);
  assert.equal(m.kind === 'names' && m.classes.indexOf('Bag'), 8);
  assert.equal(labelFolderName('a/b\\c'), 'a_b_c');
});

test("folders named 0, 1, ... map by number, so '10' is label 10 and not the third sorted folder", () => {
  const labels = Array.from({ length: 12 }, (_, i) => `class ${i}`);
  const folders = Array.from({ length: 12 }, (_, i) => String(i)).sort();
  assert.deepEqual(folders.slice(0, 4), ['0', '1', '10', '11']);
  const m = matchClassFolders(folders, labels);
  assert.ok(m.kind === 'names');
  assert.equal(m.classes.indexOf('10'), 10);
});

test('other names: sorted order when as many as labels, else a mismatch that names the strangers', () => {
  assert.equal(matchClassFolders(['n01', 'n02'], ['tench', 'goldfish']).kind, 'order');
  const m = matchClassFolders(['cats', 'dogs', 'Bag'], FASHION_MNIST_LABELS);
  assert.ok(m.kind === 'mismatch');
  assert.match(m.reason, /cats, dogs are not among them, and there are 3 folders for 10 labels/);
  assert.equal(matchClassFolders([], ['a', 'b']).kind, 'mismatch');
});

test('folders 1..K are 1-based, with a note showing the mapping', () => {
  const labels = Array.from({ length: 12 }, (_, i) => `class ${i}`);
  const m = matchClassFolders(Array.from({ length: 12 }, (_, i) => String(i + 1)).sort(), labels);
  assert.ok(m.kind === 'names');
  assert.equal(m.classes.indexOf('1'), 0);
  assert.equal(m.classes.indexOf('10'), 9);
  assert.equal(m.classes.indexOf('12'), 11);
  assert.match(m.note ?? '', /1-based: 1 → class 0, 2 → class 1, .* 12 → class 11/);
});

test('other numbers, as many as labels, are taken in numeric order with the mapping in a note', () => {
  const labels = Array.from({ length: 10 }, (_, i) => `c${i}`);
  const m = matchClassFolders(['2', '3', '4', '5', '6', '7', '8', '9', '10', '11'].sort(), labels);
  assert.ok(m.kind === 'order');
  assert.deepEqual(m.classes, ['2', '3', '4', '5', '6', '7', '8', '9', '10', '11']);
  assert.match(m.note, /numeric order: 2 → c0, .*10 → c8, 11 → c9/);
  const words = matchClassFolders(['n02', 'n01'], ['tench', 'goldfish']);
  assert.ok(words.kind === 'order');
  assert.match(words.note, /sorted order: n01 → tench, n02 → goldfish/);
});

test('names differing only in case, spaces, _, / or - match by name; ambiguity does not', () => {
  const m = matchClassFolders(['t-shirt_top', 'ankle_boot', 'BAG'], FASHION_MNIST_LABELS);
  assert.ok(m.kind === 'names');
  assert.equal(m.classes.indexOf('t-shirt_top'), 0);
  assert.equal(m.classes.indexOf('ankle_boot'), 9);
  assert.equal(m.classes.indexOf('BAG'), 8);
  assert.equal(m.note, undefined);
  // two folders for one label: not a name match (and not as many as the labels)
  assert.equal(matchClassFolders(['Bag', 'bag'], FASHION_MNIST_LABELS).kind, 'mismatch');
  assert.match((matchClassFolders([], ['a', 'b']) as { reason: string }).reason, /no class folders/);
});

test('ttaq quantize: an --eval folder whose classes are not the labels is refused; as --calib its labels are dropped', async () => {
  const src = graySet(12);
  const set = join(dir, 'pets');
  await writeImageFolder({ ...src, labels: src.labels.map((l) => l % 2) as typeof src.labels, classes: ['cats', 'dogs'] }, set);
  const q = (extra: string[]) => spawnSync(process.execPath, ['bin/ttaq.js', 'quantize', '--model', 'models/resnet20-fmnist.onnx', '--calib', set, '--calib-images', '12', '--min-calib', '8', '--method', 'minmax',
    '--w-bits', '8', '--a-bits', '8', '--no-state', '--variant-images', '0', '--out', join(dir, 'q', 'm.onnx'), ...extra], { encoding: 'utf8', env: { ...process.env, TTAQ_JSON_ERRORS: '1' } });
  const refused = q(['--eval', set, '--quiet']);
  assert.equal(refused.status, 2, refused.stderr);
  assert.equal(JSON.parse(refused.stderr.trim().split('\n').pop()!).error.code, 'DATA_BAD_FORMAT');
  const calibOnly = q(['--json']);
  assert.equal(calibOnly.status, 0, calibOnly.stderr);
  assert.match(calibOnly.stderr, /note: --calib .*pets: its class folders \(cats, dogs\) are not the model's labels.*labels are not used/);
  assert.equal(JSON.parse(calibOnly.stdout).report.accuracy, null, 'no accuracy from labels that are not the model\'s');
});

test('ttaq quantize: a folder of images without class sub-folders calibrates, unlabelled; as --eval it is refused', async () => {
  const src = graySet(12);
  await writeImageFolder({ ...src, labels: src.labels.map(() => 0) as typeof src.labels, classes: ['frames'] }, join(dir, 'cam'));
  const flat = join(dir, 'cam', 'frames'); // twelve PNGs, no sub-folders
  const q = (extra: string[]) => spawnSync(process.execPath, ['bin/ttaq.js', 'quantize', '--model', 'models/resnet20-fmnist.onnx', '--calib', flat, '--calib-images', '12', '--min-calib', '8', '--method', 'minmax',
    '--w-bits', '8', '--a-bits', '8', '--no-state', '--variant-images', '0', '--out', join(dir, 'qf', 'm.onnx'), ...extra], { encoding: 'utf8', env: { ...process.env, TTAQ_JSON_ERRORS: '1' } });
  const ok = q(['--json']);
  assert.equal(ok.status, 0, ok.stderr);
  const report = JSON.parse(ok.stdout).report;
  assert.equal(report.accuracy, null, 'unlabelled images give no accuracy');
  assert.equal(report.calibration.activationRanges !== undefined, true);
  const refused = q(['--eval', flat, '--quiet']);
  assert.equal(refused.status, 2, refused.stderr);
  const err = JSON.parse(refused.stderr.trim().split('\n').pop()!).error;
  assert.equal(err.code, 'DATA_BAD_FORMAT');
  assert.match(err.message, /no class sub-folders/);
});

test('an ImageNet-C tree for ttaq eval: class folders matched to the model\'s labels, or refused', async () => {
  const { folderDomains } = await import('../../sdk/eval/index.ts');
  const src = graySet(20);
  const opts = { severity: 5, order: { kind: 'shuffled' as const }, seed: 1, classes: 10, labels: [...FASHION_MNIST_LABELS], fit: { channels: 1 as const, height: 28, width: 28, resize: 'stretch' as const } };
  const named = join(dir, 'c-named');
  await writeImageFolder({ ...src, classes: [...FASHION_MNIST_LABELS] }, join(named, 'fog', '5'));
  const [fog] = await folderDomains(named, opts);
  // every image comes back with its own label (sorted folders would put 'Ankle boot' at 0)
  const per = 28 * 28;
  const labelOf = new Map<string, number>();
  for (let i = 0; i < src.count; i++) labelOf.set(Buffer.from(src.images.subarray(i * per, (i + 1) * per)).toString('base64'), src.labels[i]!);
  assert.equal(labelOf.size, src.count, 'distinct test images');
  for (let i = 0; i < fog!.data.count; i++) {
    assert.equal(fog!.data.labels[i], labelOf.get(Buffer.from(fog!.data.images.subarray(i * per, (i + 1) * per)).toString('base64')));
  }
  const pets = join(dir, 'c-pets');
  await writeImageFolder({ ...src, labels: src.labels.map((l) => l % 2) as typeof src.labels, classes: ['cats', 'dogs'] }, join(pets, 'fog', '5'));
  await assert.rejects(folderDomains(pets, opts), (e: unknown) => e instanceof Error && /cats, dogs are not among them/.test(e.message));
});
