// Reading externally supplied domains (sdk/eval/domains.ts): data that cannot be scored as it is
// (labels outside the model's classes, empty domains, missing severities, broken entries) is
// refused with a data error that says where and what to do; guesses are said in a note.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { packLabels, writeIdxDataset, writeImageFolder, type Dataset } from '../../sdk/data/index.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { domainHeads, folderDomains, getProtocol } from '../../sdk/eval/index.ts';
import { FASHION_MNIST_LABELS } from '../../sdk/manifest/index.ts';
import { graySet } from '../data/helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'ttaq-domains-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const LABELS = [...FASHION_MNIST_LABELS];
const base = { severity: 5, seed: 0, classes: 10, labels: LABELS, fit: { channels: 1 as const, height: 28, width: 28, resize: 'stretch' as const } };
const continual = getProtocol('continual').order;

/** graySet(n) with other labels. */
const relabel = (d: Dataset, labels: number[]): Dataset => ({ ...d, labels: packLabels(labels) });

const dataError = (re: RegExp) => (e: unknown): boolean => {
  assert.ok(isTtaqError(e), `a TtaqError, got ${String(e)}`);
  assert.match(e.message, re);
  return /^DATA_/.test(e.code);
};

describe('labels outside the model\'s classes', () => {
  const src = graySet(20);

  it('are refused with the file, the first bad label, its index and the valid range', async () => {
    const labels = Array.from(src.labels);
    labels[3] = 12;
    labels[7] = 200;
    await writeIdxDataset(join(dir, 'bad'), 'a', relabel(src, labels));
    for (const order of [continual, getProtocol('imbalanced').order, getProtocol('camera').order]) {
      await assert.rejects(folderDomains(join(dir, 'bad'), { ...base, order }),
        dataError(/a-labels-idx1-ubyte\.gz: label 12 at index 3 is not a class of the model \(valid labels 0 to 9: the model has 10 classes\)/));
    }
  });

  it('labels 1..K are refused with the hint that they look 1-based', async () => {
    await writeIdxDataset(join(dir, 'one'), 'a', relabel(src, Array.from(src.labels, (l) => l + 1)));
    await assert.rejects(folderDomains(join(dir, 'one'), { ...base, order: continual }), dataError(/label 10 at index 9 .*looks 1-based: subtract 1/));
  });
});

describe('domains that cannot be scored', () => {
  it('a domain with no images is refused, not reported as 0 % error', async () => {
    await writeIdxDataset(join(dir, 'empty'), 'a', { count: 0, height: 28, width: 28, channels: 1, images: new Uint8Array(0), labels: new Uint8Array(0) });
    await assert.rejects(folderDomains(join(dir, 'empty'), { ...base, order: continual }), dataError(/a-images-idx3-ubyte\.gz: domain 'a' holds no images/));
  });

  it('a broken link in the data folder is named in a data error', async () => {
    const d = join(dir, 'dangling');
    await writeImageFolder({ ...graySet(10), classes: LABELS }, join(d, 'fog', '5'));
    symlinkSync(join(dir, 'nowhere'), join(d, 'broken'));
    await assert.rejects(folderDomains(d, { ...base, order: continual }), dataError(/dangling\/broken is a symbolic link whose target does not exist/));
  });

  it('images directly in <corruption>/<severity>/ (no class folders) are refused with the layout', async () => {
    const d = join(dir, 'flat');
    await writeImageFolder({ ...graySet(4), classes: ['x'] }, join(d, 'fog'));
    rmSync(join(d, 'fog', '5'), { recursive: true, force: true });
    // fog/x/*.png -> fog/5/*.png: the images lie in the severity folder itself
    const { renameSync } = await import('node:fs');
    renameSync(join(d, 'fog', 'x'), join(d, 'fog', '5'));
    await assert.rejects(folderDomains(d, { ...base, order: continual }), dataError(/fog\/5 has no class sub-folders; .*<corruption>\/<severity>\/<class>\//));
  });
});

describe('severities', () => {
  const src = graySet(20);
  const tree = join(dir, 'sev');
  const ready = (async () => {
    await writeImageFolder({ ...src, classes: LABELS }, join(tree, 'fog', '5'));
    await writeImageFolder({ ...src, classes: LABELS }, join(tree, 'snow', '3'));
  })();

  it('an ImageNet-C corruption named in --domains without the severity is an error naming the ones it has', async () => {
    await ready;
    await assert.rejects(folderDomains(tree, { ...base, order: continual, domains: ['fog', 'snow'] }), dataError(/snow has severity 3 only, not 5; use --severity 3/));
  });

  it('without --domains the corruptions lacking it are skipped with a note', async () => {
    await ready;
    const notes: string[] = [];
    const blocks = await folderDomains(tree, { ...base, order: continual, onNote: (l) => notes.push(l) });
    assert.deepEqual(blocks.map((b) => b.name), ['fog']);
    assert.equal(notes.length, 1);
    assert.match(notes[0]!, /skipped snow \(severity 3\): no severity 5 folder/);
  });

  it('an IDX folder of corruption files at other severities says what it holds and which --severity to use', async () => {
    await writeIdxDataset(join(dir, 'idx3'), 'fog-3', src, { sharedLabels: true });
    await assert.rejects(folderDomains(join(dir, 'idx3'), { ...base, order: continual }), dataError(/no domain at severity 5; it holds fog \(severity 3\): use --severity 3, or name domains with --domains \(fog-3\)/));
    const [fog] = await folderDomains(join(dir, 'idx3'), { ...base, severity: 3, order: continual });
    assert.equal(fog!.data.count, 20);
  });

  it('--domains takes a corruption by its plain name (its file at --severity) as well as by the file name', async () => {
    const d = join(dir, 'idx-plain');
    await writeIdxDataset(d, 'fog-3', src, { sharedLabels: true });
    await writeIdxDataset(d, 'fog-5', src, { sharedLabels: true });
    await writeIdxDataset(d, 'snow-5', src, { sharedLabels: true });
    const plain = await folderDomains(d, { ...base, domains: ['snow', 'fog'], order: continual });
    assert.deepEqual(plain.map((b) => b.name), ['snow-5', 'fog-5']);
    const at3 = await folderDomains(d, { ...base, severity: 3, domains: ['fog', 'snow-5'], order: continual });
    assert.deepEqual(at3.map((b) => b.name), ['fog-3', 'snow-5']);
    await assert.rejects(folderDomains(d, { ...base, severity: 3, domains: ['snow'], order: continual }),
      dataError(/no snow at severity 3; it has snow at severity 5: use --severity 5, or name the file in --domains \(snow-5\)/));
    await assert.rejects(folderDomains(d, { ...base, domains: ['rain'], order: continual }),
      dataError(/no domain 'rain' .*files present: fog-3, fog-5, snow-5, or a corruption by its plain name: fog, snow$/));
  });
});

describe("--domains on 'ttaq corrupt' output without --severity (plainName: 'all')", () => {
  const src = graySet(12);
  const d = join(dir, 'corrupt-out');
  // written out of severity order, as a directory listing need not give them in order
  const ready = (async () => {
    for (const n of ['gaussian_noise-5', 'gaussian_noise-1', 'gaussian_noise-3', 'fog-2', 'snow-5']) await writeIdxDataset(d, n, src, { sharedLabels: true });
  })();
  const all = { ...base, order: continual, plainName: 'all' as const };

  it('a plain corruption name selects each of its files present, in severity order, names in the given order', async () => {
    await ready;
    const blocks = await folderDomains(d, { ...all, domains: ['gaussian_noise', 'fog'] });
    assert.deepEqual(blocks.map((b) => b.name), ['gaussian_noise-1', 'gaussian_noise-3', 'gaussian_noise-5', 'fog-2']);
    for (const b of blocks) assert.equal(b.data.count, 12);
  });

  it('a file name still selects that file alone, mixed with plain names', async () => {
    await ready;
    const blocks = await folderDomains(d, { ...all, domains: ['gaussian_noise-3', 'snow'] });
    assert.deepEqual(blocks.map((b) => b.name), ['gaussian_noise-3', 'snow-5']);
  });

  it('an unknown name is an error listing the files and the plain corruption names', async () => {
    await ready;
    await assert.rejects(folderDomains(d, { ...all, domains: ['fog', 'frost'] }),
      dataError(/corrupt-out: no domain 'frost' .*files present: fog-2, gaussian_noise-1, gaussian_noise-3, gaussian_noise-5, snow-5, or a corruption by its plain name: fog, gaussian_noise, snow$/));
    await assert.rejects(folderDomains(d, { ...all, domains: ['gaussian_noise-2'] }), dataError(/no domain 'gaussian_noise-2'/));
  });

  it('table heads keep the severity only when the domains are at more than one', () => {
    assert.deepEqual(domainHeads(['gaussian_noise-5', 'fog-5', 'clean']), ['gauss', 'fog', 'clean']);
    assert.deepEqual(domainHeads(['gaussian_noise-1', 'gaussian_noise-3', 'fog-2', 'my-cam']), ['gauss-1', 'gauss-3', 'fog-2', 'my-cam']);
  });

  it('ttaq eval --domains gaussian_noise,fog runs every severity, and the table keeps the severities apart', async () => {
    await ready;
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'tools/ttaq.ts', 'eval', '--data', d, '--domains', 'gaussian_noise,fog', '--method', 'source', '--limit', '4', '--quiet'], { cwd: process.cwd(), encoding: 'utf8' });
    assert.match(out, /4 domains \(gaussian_noise-1, gaussian_noise-3, gaussian_noise-5, fog-2\)/);
    assert.match(out, /\| model \| method \| gauss-1 \| gauss-3 \| gauss-5 \| fog-2 \| mean \|/);
    // with --severity a plain name is its file at that severity only
    const at5 = execFileSync(process.execPath, ['--import', 'tsx', 'tools/ttaq.ts', 'eval', '--data', d, '--domains', 'gaussian_noise,snow', '--severity', '5', '--method', 'source', '--limit', '4', '--quiet'], { cwd: process.cwd(), encoding: 'utf8' });
    assert.match(at5, /2 domains \(gaussian_noise-5, snow-5\)/);
    assert.match(at5, /\| model \| method \| gauss \| snow \| mean \|/);
  });
});

describe('ImageNet-C class folders and --limit', () => {
  const src = graySet(40);
  const per = 28 * 28;
  /** Each image's label in `src`, by its bytes. */
  const labelOf = new Map<string, number>();
  for (let i = 0; i < src.count; i++) labelOf.set(Buffer.from(src.images.subarray(i * per, (i + 1) * per)).toString('base64'), src.labels[i]!);
  const assertOwnLabels = (d: Dataset): void => {
    for (let i = 0; i < d.count; i++) assert.equal(d.labels[i], labelOf.get(Buffer.from(d.images.subarray(i * per, (i + 1) * per)).toString('base64')), `image ${i}`);
  };

  it('folders 1..10 are read as 1-based (not in text order, where 10 follows 1), with a note', async () => {
    const t = join(dir, 'num1');
    await writeImageFolder({ ...src, classes: LABELS.map((_, i) => String(i + 1)) }, join(t, 'fog', '5'));
    const notes: string[] = [];
    const [fog] = await folderDomains(t, { ...base, order: continual, onNote: (l) => notes.push(l) });
    assert.equal(fog!.data.count, 40);
    assertOwnLabels(fog!.data);
    assert.match(notes.join('\n'), /1-based: 1 → T-shirt\/top, 2 → Trouser, .*10 → Ankle boot/);
  });

  it('folder names matching the labels but for case and separators are read by name', async () => {
    const t = join(dir, 'lower');
    await writeImageFolder({ ...src, classes: LABELS.map((l) => l.toLowerCase().replace(/[ /]/g, '_')) }, join(t, 'fog', '5'));
    const notes: string[] = [];
    const [fog] = await folderDomains(t, { ...base, order: continual, onNote: (l) => notes.push(l) });
    assertOwnLabels(fog!.data);
    assert.deepEqual(notes, [], 'a name match needs no note');
  });

  it('--limit takes that many images in all, spread over the class folders present', async () => {
    const t = join(dir, 'three');
    // three classes of the model's ten, 4 images each
    const keep = Array.from({ length: src.count }, (_, i) => i).filter((i) => src.labels[i]! < 3);
    const sub: Dataset = { ...src, count: keep.length, images: Uint8Array.from(keep.flatMap((i) => Array.from(src.images.subarray(i * per, (i + 1) * per)))), labels: packLabels(keep.map((i) => src.labels[i]!)), classes: LABELS };
    await writeImageFolder(sub, join(t, 'fog', '5'));
    const [fog] = await folderDomains(t, { ...base, order: continual, limit: 7 });
    assert.equal(fog!.data.count, 7, 'not ceil(7 / 10) = 1 per class folder');
    const counts = [0, 0, 0];
    for (const l of fog!.data.labels) counts[l]!++;
    assert.deepEqual(counts.sort(), [2, 2, 3]);
    assertOwnLabels(fog!.data);
  });
});

describe('IDX folders written from a class-folder tree', () => {
  it('ttaq corrupt --format idx keeps the class names (classes.txt), and folderDomains scores by them', async () => {
    const { execFileSync } = await import('node:child_process');
    const { readFileSync } = await import('node:fs');
    const src = graySet(30);
    // three classes whose sorted folder index (Bag 0, Coat 1, Trouser 2) is not their model label
    const names = ['Trouser', 'Coat', 'Bag'];
    const tree = join(dir, 'three-classes');
    await writeImageFolder({ ...src, labels: packLabels(Array.from(src.labels, (l) => l % 3)), classes: names }, tree);
    const out = join(dir, 'three-idx');
    execFileSync(process.execPath, ['--import', 'tsx', 'tools/ttaq.ts', 'corrupt', '--data', tree, '--format', 'idx', '--corruptions', 'brightness', '--severities', '1', '--out', out, '--quiet'], { cwd: process.cwd() });
    assert.equal(readFileSync(join(out, 'classes.txt'), 'utf8'), 'Bag\nCoat\nTrouser\n');
    const [d] = await folderDomains(out, { ...base, severity: 1, order: continual });
    const counts = new Map<number, number>();
    for (const l of d!.data.labels) counts.set(l, (counts.get(l) ?? 0) + 1);
    // Trouser 1, Coat 4, Bag 8 in the model's label order; labels (i mod 10) mod 3 give Trouser 12
    // images of the 30, Coat and Bag 9 each
    assert.deepEqual([...counts].sort((a, b) => a[0] - b[0]), [[1, 12], [4, 9], [8, 9]]);
  });
});

describe('ImageNet-C images of another size', () => {
  it('are brought to the model input by the manifest\'s resize mode, as the device resizes frames', async () => {
    // 20 images of 40 high x 20 wide, dark in their top and bottom 5 rows; center-crop keeps the
    // middle 20x20 square (rows 10-29), stretch squeezes all 40 rows
    const count = 20;
    const [h, w] = [40, 20];
    const images = new Uint8Array(count * h * w);
    for (let i = 0; i < count; i++) {
      for (let y = 0; y < h; y++) images.fill(y < 5 || y >= 35 ? 0 : 40 + 10 * i, (i * h + y) * w, (i * h + y + 1) * w);
    }
    const tall: Dataset = { count, height: h, width: w, channels: 1, images, labels: packLabels(Array.from({ length: count }, (_, i) => i % 10)), classes: LABELS };
    const t = join(dir, 'tall');
    await writeImageFolder(tall, join(t, 'fog', '5'));
    const fit = (resize: 'stretch' | 'center-crop') => ({ ...base, fit: { ...base.fit, resize }, order: continual });
    const [crop] = await folderDomains(t, fit('center-crop'));
    const [stretch] = await folderDomains(t, fit('stretch'));
    assert.equal(crop!.data.height, 28);
    const mean = (d: Dataset): number => d.images.reduce((s, v) => s + v, 0) / d.images.length;
    // the crop is all bright; the stretch keeps the dark bands (a quarter of the rows)
    assert.ok(Math.min(...crop!.data.images) >= 40, 'no dark row in the center crop');
    assert.ok(mean(stretch!.data) < 0.85 * mean(crop!.data), `stretch ${mean(stretch!.data)} vs crop ${mean(crop!.data)}`);
  });
});
