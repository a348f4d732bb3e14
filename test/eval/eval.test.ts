import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { writeIdxDataset, type Dataset } from '../../sdk/data/index.ts';
import sharp from 'sharp';
import { EvalJournal, evaluate, folderDomains, getProtocol, journalPathFor, loadEvalModel, markdownTable, readJournal, rowKey, stabilitySvg, type EvalModel, type EvalRow } from '../../sdk/eval/index.ts';
import { sha256Hex, writeManifest, type Manifest } from '../../sdk/manifest/index.ts';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { encodeModel } from '../../sdk/onnx/codec.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import type { Model } from '../../sdk/onnx/types.ts';

const run = promisify(execFile);

// A two-class "brightness" model on 8x8 gray images: BN (source statistics: identity) -> GAP ->
// Gemm with logits [0.5 - m, m - 0.5] for mean pixel m in [0, 1]. Bright images are class 1.
function brightnessModel(): Model {
  const b = new GraphBuilder('brightness');
  const x = b.input('input', 'float32', ['N', 1, 8, 8]);
  const bn = b.op1('BatchNormalization', [x, b.initializer('s', f32([1], [1])), b.initializer('b', f32([1], [0])), b.initializer('m', f32([1], [0])), b.initializer('v', f32([1], [1]))], { epsilon: A.float(1e-5) }, { name: 'bn' });
  const gap = b.op1('Flatten', [b.op1('GlobalAveragePool', [bn])], { axis: A.int(1) });
  b.op('Gemm', [gap, b.initializer('w', f32([1, 2], [-1, 1])), b.initializer('c', f32([2], [0.5, -0.5]))], {}, { outputNames: ['logits'] });
  b.output('logits', 'float32', ['N', 2]);
  return { irVersion: 8, opsetImports: [{ domain: '', version: 17 }], producerName: 'test', producerVersion: '0', metadata: {}, graph: b.build() };
}

/** n images, half bright half dark; `flip` labels bright images 0 instead of 1. */
function images(n: number, seed: number, flip: boolean): Dataset {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const data = new Uint8Array(n * 64);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const bright = i % 2 === 0;
    for (let p = 0; p < 64; p++) data[i * 64 + p] = Math.round((bright ? 180 : 60) + 40 * (rnd() - 0.5));
    labels[i] = bright !== flip ? 1 : 0;
  }
  return { count: n, height: 8, width: 8, channels: 1, images: data, labels };
}

let dir = '';
let modelPath = '';
let model: EvalModel;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ttaq-eval-'));
  const bytes = encodeModel(brightnessModel());
  modelPath = join(dir, 'bright.onnx');
  await writeFile(modelPath, bytes);
  const manifest: Manifest = {
    format: 'ttaq-manifest/1', name: 'bright', model: 'bright.onnx', sha256: sha256Hex(bytes),
    input: { name: 'input', shape: [-1, 1, 8, 8] }, output: { name: 'logits' }, labels: ['dark', 'bright'],
    preprocess: { height: 8, width: 8, channels: 1, resize: 'stretch', mean: [0], std: [1], layout: 'NCHW' },
    adaptation: { bnNodes: ['bn'] }, provenance: { metrics: {} },
  };
  await writeManifest(join(dir, 'bright.manifest.json'), manifest);
  await writeIdxDataset(join(dir, 'data'), 'plain', images(96, 1, false));
  await writeIdxDataset(join(dir, 'data'), 'flipped', images(64, 2, true));
  model = await loadEvalModel(modelPath);
});
after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

describe('evaluation protocols', () => {
  it('counts online errors per domain: 0% where the model is right, 100% where labels are flipped', async () => {
    const p = getProtocol('continual');
    const blocks = await folderDomains(join(dir, 'data'), { domains: ['plain', 'flipped'], severity: 5, order: p.order, seed: 0, classes: 2 });
    assert.deepEqual(blocks.map((b) => [b.name, b.data.count]), [['plain', 96], ['flipped', 64]]);
    const rows = await evaluate([model], ['source', 'tent'], blocks, { protocol: p.name, batch: 16, passes: 1, order: p.order, seed: 0 });
    const src = rows[0]!;
    assert.deepEqual(src.errors, [0, 100]);
    assert.equal(src.mean, 50);
    assert.equal(src.images, 160);
    const tent = rows[1]!;
    assert.equal(tent.counters.steps, 10);
    assert.ok(tent.counters.updates > 0);
    for (const e of tent.errors) assert.ok(e >= 0 && e <= 100);
    const md = markdownTable(rows);
    assert.match(md, /\| model \| method \| plain \| flipped \| mean \|/);
    assert.match(md, /\| bright \| source \| 0\.0 \| 100\.0 \| \*\*50\.0\*\* \|/);
  });

  it('imbalanced ordering changes the order, not the samples (source error unchanged), and passes repeat the stream', async () => {
    const p = getProtocol('imbalanced');
    const blocks = await folderDomains(join(dir, 'data'), { severity: 5, order: p.order, seed: 3, classes: 2, limit: 50 });
    assert.deepEqual(blocks.map((b) => b.name), ['flipped', 'plain']);
    // Same samples as the shuffled order (same seed and limit), in another order.
    const iid = await folderDomains(join(dir, 'data'), { severity: 5, order: getProtocol('continual').order, seed: 3, classes: 2, limit: 50 });
    const sorted = (d: Dataset) => Array.from(d.images).sort((a, b) => a - b);
    const want = sorted(iid[1]!.data);
    assert.ok(sorted(blocks[1]!.data).every((v, i) => v === want[i]), 'the same samples');
    assert.notDeepEqual(Array.from(blocks[1]!.data.labels), Array.from(iid[1]!.data.labels));
    const rows = await evaluate([model], ['source'], blocks, { protocol: p.name, batch: 8, passes: 3, order: p.order, seed: 3 });
    assert.deepEqual(rows[0]!.passMeans, [50, 50, 50]);
    assert.match(markdownTable(rows), /pass 3 \| last - first/);
  });

  it('ttaq eval prints JSON rows and rejects bad usage with exit code 2', async () => {
    const cli = ['--import', 'tsx', 'tools/ttaq.ts', 'eval'];
    const { stdout } = await run('node', [...cli, '--model', modelPath, '--data', join(dir, 'data'), '--domains', 'plain,flipped', '--method', 'source,bn:robust', '--batch', '32', '--json', '--quiet'], { cwd: process.cwd() });
    const res = JSON.parse(stdout) as { rows: { method: string; errors: number[] }[] };
    assert.deepEqual(res.rows.map((r) => r.method), ['source', 'bn:robust']);
    assert.deepEqual(res.rows[0]!.errors, [0, 100]);
    await assert.rejects(run('node', [...cli, '--model', modelPath, '--method', 'nope', '--quiet']), (e: { code?: number }) => e.code === 2);
    await assert.rejects(run('node', [...cli, '--model', modelPath, '--plot', join(dir, 'p.svg'), '--quiet']), (e: { code?: number; stderr?: string }) => e.code === 2 && /ending in \.png/.test(e.stderr ?? ''));
  });

  it('ttaq eval: the header describes the run that happens; --method \'\' is a usage error', async () => {
    const cli = ['--import', 'tsx', 'tools/ttaq.ts', 'eval', '--model', modelPath, '--quiet'];
    const { stdout } = await run('node', [...cli, '--data', join(dir, 'data'), '--domains', 'plain', '--method', 'source', '--severity', '2', '--passes', '2', '--limit', '20'], { cwd: process.cwd() });
    const header = stdout.split('\n')[0]!;
    assert.match(header, /^continual: 1 domain \(plain\) from .*data, shuffled within each domain; batch 64, 2 passes, at most 20 samples per domain$/);
    assert.doesNotMatch(header, /15 corruptions|severity 5/);
    await assert.rejects(run('node', [...cli, '--data', join(dir, 'data'), '--method', '']), (e: { code?: number; stderr?: string }) => e.code === 2 && /--method '' names no method/.test(e.stderr ?? ''));
  });

  it('--plot draws the error per pass and per domain as a PNG', async () => {
    const cli = ['--import', 'tsx', 'tools/ttaq.ts', 'eval'];
    const png = join(dir, 'stability.png');
    await run('node', [...cli, '--model', modelPath, '--data', join(dir, 'data'), '--domains', 'plain,flipped', '--method', 'source,bn', '--batch', '32', '--passes', '3', '--plot', png, '--quiet'], { cwd: process.cwd() });
    const meta = await sharp(png).metadata();
    assert.equal(meta.format, 'png');
    assert.equal(meta.width, 960);
    assert.equal(meta.height, 720);
    // Not blank: the lines are drawn in colour.
    const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    let coloured = 0;
    for (let i = 0; i < data.length; i += info.channels) if (Math.abs(data[i]! - data[i + 2]!) > 60) coloured++;
    assert.ok(coloured > 200, `only ${coloured} coloured pixels`);
  });

  it('the stability SVG has one line per row and panel, and the first/last pass figures in the legend', async () => {
    const row = (method: string, passes: number[][]): EvalRow => ({
      model: 'm', method, protocol: 'longrun', batch: 64, domains: ['a', 'b', 'c'], errors: passes[passes.length - 1]!,
      mean: 0, passMeans: passes.map((p) => p.reduce((s, x) => s + x, 0) / p.length), passErrors: passes,
      counters: { steps: 0, updates: 0, skipped: 0, samples: 0, collapseResets: 0, nonFiniteResets: 0, manualResets: 0 }, images: 0, seconds: 0,
    });
    const svg = stabilitySvg([row('bn', [[10, 20, 30], [12, 22, 32]]), row('abl', [[9, 18, 27], [9, 18, 30]])]);
    assert.equal((svg.match(/<polyline /g) ?? []).length, 4);
    assert.match(svg, /bn: 20\.0 → 22\.0 \(\+2\.0\)/);
    assert.match(svg, /abl: 18\.0 → 19\.0 \(\+1\.0\)/);
    assert.throws(() => stabilitySvg([]), /nothing to plot/);
  });
});

describe('domain discovery', () => {
  it('orders the corruption folders that ttaq corrupt writes by the protocol, at one severity', async () => {
    const { defaultIdxDomains } = await import('../../sdk/eval/index.ts');
    assert.deepEqual(defaultIdxDomains(['fog-5', 'gaussian_noise-5', 'fog-3', 'jpeg_compression-5'], 5), ['gaussian_noise-5', 'fog-5', 'jpeg_compression-5']);
    assert.deepEqual(defaultIdxDomains(['b', 'a'], 5), ['b', 'a']);
  });
});

describe('method specs', () => {
  it('parses preset, normalisation and per-method overrides', async () => {
    const { parseMethodSpec, mergeOptions } = await import('../../sdk/eval/index.ts');
    assert.deepEqual(parseMethodSpec('tent'), { method: 'tent', options: {} });
    assert.deepEqual(parseMethodSpec('abl:robust@abl.tau=0,lr=5e-4,episodic=true'), { method: 'abl:robust', options: { abl: { tau: 0 }, lr: 5e-4, episodic: true } });
    assert.deepEqual(mergeOptions({ lr: 1, abl: { tau: 1, freqExp: 2 } }, { abl: { tau: 0 } }), { lr: 1, abl: { tau: 0, freqExp: 2 } });
  });
});

describe('input pipeline', () => {
  it('normalises same-size images in onnxruntime exactly as preprocessBatch does', async () => {
    const { InputPipeline } = await import('../../sdk/eval/input.ts');
    const { preprocessBatch } = await import('../../sdk/data/index.ts');
    const pre = { height: 4, width: 3, channels: 3 as const, resize: 'stretch' as const, mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3], layout: 'NCHW' as const };
    const batch = { count: 2, height: 4, width: 3, channels: 3, images: Uint8Array.from({ length: 72 }, (_, i) => (i * 37) % 256) };
    const p = new InputPipeline(pre);
    const got = await p.run(batch);
    const want = preprocessBatch(batch, pre);
    assert.deepEqual(got.dims, [...want.dims]);
    let d = 0;
    for (let i = 0; i < want.data.length; i++) d = Math.max(d, Math.abs(got.data[i]! - want.data[i]!));
    assert.ok(d < 1e-5, `differs by ${d}`);
    await p.close();
  });
});

/** Runs `node <args>` and kills it (SIGKILL) once its first row is in the journal. */
async function killAfterFirstRow(args: string[], journal: string): Promise<void> {
  const child = spawn('node', args, { cwd: process.cwd(), stdio: 'ignore' });
  const exited = new Promise<void>((res) => child.on('exit', () => res()));
  // the second row (150 passes of TENT) takes seconds, so the first is journaled well before the end
  while (!existsSync(journal) && child.exitCode === null) await new Promise((r) => setTimeout(r, 10));
  child.kill('SIGKILL');
  await exited;
}

describe('resuming an interrupted run', () => {
  it('evaluate takes finished rows as they are and reports only the rows it computes', async () => {
    const p = getProtocol('continual');
    const blocks = await folderDomains(join(dir, 'data'), { domains: ['plain'], severity: 5, order: p.order, seed: 0, classes: 2, limit: 32 });
    const kept = { model: 'bright', method: 'source', errors: [42] } as unknown as EvalRow;
    const seen: string[] = [];
    const rows = await evaluate([model], ['source', 'tent'], blocks, {
      protocol: p.name, batch: 16, passes: 1, order: p.order, seed: 0,
      finished: new Map([[rowKey(model, 'source'), kept]]), onRow: (r, key) => seen.push(`${r.method} ${key === rowKey(model, 'tent')}`),
    });
    assert.equal(rows[0], kept);
    assert.equal(rows[1]!.method, 'tent');
    assert.deepEqual(seen, ['tent true']);
  });

  it('the journal is read back only for the same settings', () => {
    const path = join(dir, 'j.json.partial.json');
    const row = { model: 'bright', method: 'source', errors: [1, 2] } as unknown as EvalRow;
    assert.deepEqual(readJournal(path, 's1'), { kind: 'none' });
    new EvalJournal(path, 's1').add('k', row);
    const back = readJournal(path, 's1');
    assert.ok(back.kind === 'resumed');
    assert.deepEqual(back.rows.get('k'), row);
    assert.deepEqual(readJournal(path, 's2'), { kind: 'stale', why: 'written with other settings' });
    writeFileSync(path, '{"trunc');
    assert.equal(readJournal(path, 's1').kind, 'stale');
    new EvalJournal(path, 's1').remove();
    assert.deepEqual(readJournal(path, 's1'), { kind: 'none' });
  });

  it('ttaq eval --out killed after its first row resumes from the journal when run again', async () => {
    const out = join(dir, 'resume.json');
    const journal = journalPathFor(out);
    const args = ['--import', 'tsx', 'tools/ttaq.ts', 'eval', '--model', modelPath, '--data', join(dir, 'data'), '--domains', 'plain,flipped', '--method', 'source,tent', '--batch', '16', '--passes', '150', '--out', out, '--quiet'];
    await killAfterFirstRow(args, journal);
    assert.ok(existsSync(journal), 'the first row was journaled before the run ended');
    const first = JSON.parse(readFileSync(journal, 'utf8')) as { rows: Record<string, EvalRow> };
    assert.deepEqual(Object.values(first.rows).map((r) => r.method), ['source']);
    const again = await run('node', args.filter((a) => a !== '--quiet'), { cwd: process.cwd() });
    assert.match(again.stderr, /resuming from .*resume\.json\.partial\.json: 1 of 2 rows finished earlier/);
    const result = JSON.parse(readFileSync(out, 'utf8')) as { rows: EvalRow[] };
    assert.deepEqual(result.rows.map((r) => r.method), ['source', 'tent']);
    assert.deepEqual(result.rows[0], Object.values(first.rows)[0], 'the journaled row, not a rerun');
    assert.equal(existsSync(journal), false, 'the journal goes once the results are written');
  });

  it('a journal written before the data changed is not resumed from', async () => {
    const data = join(dir, 'changing');
    await writeIdxDataset(data, 'plain', images(96, 1, false));
    const out = join(dir, 'changing.json');
    const journal = journalPathFor(out);
    const args = ['--import', 'tsx', 'tools/ttaq.ts', 'eval', '--model', modelPath, '--data', data, '--method', 'source,tent', '--batch', '16', '--passes', '150', '--out', out];
    await killAfterFirstRow(args, journal);
    assert.ok(existsSync(journal), 'the first row was journaled');
    // the same files rewritten (other images, same names and count): the old row is for other data
    await writeIdxDataset(data, 'plain', images(96, 5, true));
    const again = spawn('node', args, { cwd: process.cwd(), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const done = new Promise<void>((res) => again.on('exit', () => res()));
    again.stderr.on('data', (b: Buffer) => { stderr += b.toString(); if (/note: .*partial\.json/.test(stderr)) again.kill('SIGKILL'); });
    await done;
    assert.match(stderr, /note: .*changing\.json\.partial\.json is written with other settings \(changed: dataFiles\); this run starts over/);
    assert.doesNotMatch(stderr, /resuming from/);
  });
});

describe('evaluate() called wrongly', () => {
  it('names its arguments instead of failing inside', async () => {
    await assert.rejects(evaluate({} as never, [], [], { passes: 1 } as never), (e: unknown) => e instanceof Error && (e as { code?: string }).code === 'CONFIG_INVALID' && /evaluate\(models, methods, blocks, options\)/.test(e.message));
    await assert.rejects(evaluate([], ['abl'], [], { passes: 0 } as never), (e: unknown) => (e as { code?: string }).code === 'CONFIG_INVALID' && /passes an integer >= 1/.test((e as Error).message));
  });
});
