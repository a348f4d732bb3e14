// `ttaq corrupt`: writes corrupted copies of a dataset (one per corruption and severity), encodes
// a shift stream as a labelled MP4, or draws a contact sheet of the corruptions.
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TtaqError } from '../sdk/errors/index.ts';
import {
  contactSheet, corruptImages, fashionMnistDir, imageAt, listIdxNames, materializeStream, numClasses, parseCorruptionList,
  parseSeverities, planStream, readIdxDir, readImageFolder, resolveStreamSpec, syntheticScenes, take, writeIdxClasses, writeIdxDataset,
  writeIdx, writeImageFolder, writeLabelledVideo, type Dataset,
} from '../sdk/data/index.ts';
import { EXIT, intFlag, parseFlags, printJson } from './lib/cli.ts';
import { progressPrinter } from './lib/progress.ts';

export const summary = 'write corrupted datasets (15 corruptions x 5 severities), stream videos, contact sheets';

const help = `usage: ttaq corrupt [--data <idx dir|image folder|synthetic[:size]>] [options]

Corrupted datasets (one per corruption and severity):
  --out <dir>                 output folder (required unless --video or --contact-sheet)
  --corruptions all|a,b       corruptions (default all: the 15 in protocol order)
  --severities 1-5|5|1,3      severities (default 1-5)
  --format idx|folder         idx: <corruption>-<severity>-images-idx3-ubyte.gz (idx4 for RGB) plus a
                              shared labels-idx1-ubyte.gz, and, when the classes have names (an image
                              folder's class sub-folders), classes.txt with label i's name on line i,
                              which ttaq eval --data matches to the model's labels; folder:
                              <out>/<corruption>/<severity>/<class>/*.png (the ImageNet-C layout). Default idx.
Stream video:
  --video <out.mp4>           encode a stream as H.264 MP4 with <out>.labels.json (label, domain, severity per frame)
  --stream <spec.json|name>   stream spec file or preset: continual, imbalanced, temporal, mixed, gradual
  --per-domain <n>            samples per domain (overrides the spec)
  --fps <n>                   frames per second (default 30)
  --size <px>                 frame side (default 112)
Contact sheet:
  --contact-sheet <png>       one image (--index, default 0) across corruptions x severities
  --index <i>
Common:
  --data <path>               IDX folder (default $TTAQ_FASHION_MNIST or the system Fashion-MNIST), an image
                              folder (one sub-folder per class), or synthetic[:size] (RGB scenes, default 32 px)
  --split <name>              IDX split or image sub-folder (default test; t10k for Fashion-MNIST)
  --limit <n>                 use the first n images
  --seed <s>                  seed of all random choices (default 0)
  --json                      print a JSON summary on stdout
  --quiet                     no progress output
Exit codes: 0 ok, 1 failed, 2 bad usage or input.`;

async function loadData(path: string, split: string, limit: number | undefined): Promise<{ data: Dataset; kind: string }> {
  const syn = /^synthetic(?::(\d+))?$/.exec(path);
  if (syn) return { data: syntheticScenes(limit ?? 1000, syn[1] ? Number(syn[1]) : 32, 0), kind: 'synthetic' };
  if (!existsSync(path)) throw new TtaqError('DATA_NOT_FOUND', `--data ${path} does not exist; give an IDX folder, an image folder or synthetic`);
  if (statSync(path).isDirectory() && listIdxNames(path).length > 0) {
    const d = await readIdxDir(path, split);
    return { data: limit !== undefined ? take(d, limit) : d, kind: 'idx' };
  }
  const folder = existsSync(join(path, split)) && statSync(join(path, split)).isDirectory() ? join(path, split) : path;
  const d = await readImageFolder(folder, limit !== undefined ? { limitPerClass: limit } : {});
  return { data: limit !== undefined ? take(d, limit) : d, kind: 'folder' };
}

/** Runs a parser of flag values, turning its errors into usage errors (exit code 2). */
function flagValue<T>(flag: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof TtaqError) throw new TtaqError('CLI_USAGE', `--${flag}: ${e.message}`, e.details, { cause: e });
    throw e;
  }
}


export async function run(argv: string[]): Promise<number> {
  const parsed = parseFlags(argv, {
    data: { type: 'string' }, split: { type: 'string' }, corruptions: { type: 'string' }, severities: { type: 'string' },
    out: { type: 'string' }, format: { type: 'string' }, limit: { type: 'string' }, seed: { type: 'string' },
    video: { type: 'string' }, stream: { type: 'string' }, 'per-domain': { type: 'string' }, fps: { type: 'string' }, size: { type: 'string' },
    'contact-sheet': { type: 'string' }, index: { type: 'string' }, json: { type: 'boolean' }, quiet: { type: 'boolean' },
  }, help);
  if (!parsed) return EXIT.ok;
  const f = parsed.values;
  const seed = intFlag(f.seed, 'seed', 0) ?? 0;
  const limit = intFlag(f.limit, 'limit', 1);
  const progress = progressPrinter(process.stderr, f.quiet === true);
  if (!f.out && !f.video && !f['contact-sheet']) throw new TtaqError('CLI_USAGE', `give --out, --video or --contact-sheet\n\n${help}`);
  if (f.format && f.format !== 'idx' && f.format !== 'folder') throw new TtaqError('CLI_USAGE', `--format ${f.format}: use idx or folder`);
  const dataPath = f.data ?? fashionMnistDir();
  const { data, kind } = await loadData(dataPath, f.split ?? 'test', limit);
  const result: Record<string, unknown> = { data: dataPath, kind, images: data.count, height: data.height, width: data.width, channels: data.channels, seed };

  if (f['contact-sheet']) {
    const index = intFlag(f.index, 'index', 0) ?? 0;
    if (index >= data.count) throw new TtaqError('CLI_USAGE', `--index ${index}: the data has ${data.count} images`);
    const corruptions = flagValue('corruptions', () => parseCorruptionList(f.corruptions ?? 'all'));
    const png = contactSheet(imageAt(data, index), data.height, data.width, data.channels, { seed, corruptions });
    await mkdir(dirname(f['contact-sheet']), { recursive: true });
    await writeFile(f['contact-sheet'], png);
    result.contactSheet = f['contact-sheet'];
  }

  if (f.video) {
    if (!f.stream) throw new TtaqError('CLI_USAGE', '--video needs --stream <spec.json|continual|imbalanced|temporal|mixed|gradual>');
    let specInput: unknown = f.stream;
    if (f.stream.endsWith('.json') || existsSync(f.stream)) {
      try {
        specInput = JSON.parse(await readFile(f.stream, 'utf8'));
      } catch (e) {
        throw new TtaqError('DATA_BAD_SPEC', `cannot read stream spec ${f.stream}: ${(e as Error).message}`);
      }
    }
    const perDomain = intFlag(f['per-domain'], 'per-domain', 1);
    const size = intFlag(f.size, 'size', 8) ?? 112;
    if (size % 2 !== 0) throw new TtaqError('CLI_USAGE', `--size ${size}: H.264 needs an even frame side; use e.g. 112`);
    const overrides = { ...(f.seed !== undefined ? { seed } : {}), ...(perDomain !== undefined ? { perDomain } : {}) };
    const spec = flagValue('stream', () => resolveStreamSpec(specInput, overrides));
    const plan = planStream(spec, data.labels, numClasses(data));
    const stream = materializeStream(plan, data, { onProgress: progress });
    await mkdir(dirname(f.video), { recursive: true });
    const written = await writeLabelledVideo(f.video, stream, {
      fps: intFlag(f.fps, 'fps', 1) ?? 30, size,
      domainNames: stream.domainNames, domain: stream.domain, severity: stream.severity, stream: spec, onProgress: progress,
    });
    result.video = { ...written, frames: stream.count, spec };
  }

  if (f.out) {
    const corruptions = flagValue('corruptions', () => parseCorruptionList(f.corruptions ?? 'all'));
    const severities = flagValue('severities', () => parseSeverities(f.severities ?? '1-5'));
    const format = f.format ?? 'idx';
    const total = corruptions.length * severities.length * data.count;
    const CHUNK = 1000;
    const per = data.height * data.width * data.channels;
    const written: string[] = [];
    let done = 0;
    let corruptMs = 0;
    await mkdir(f.out, { recursive: true });
    if (format === 'idx') {
      // labels do not change under corruption: one shared labels file for every domain
      const labelsPath = join(f.out, 'labels-idx1-ubyte.gz');
      await writeIdx(labelsPath, data.labels instanceof Uint8Array ? data.labels : Int32Array.from(data.labels), [data.count]);
      written.push(labelsPath);
      // the labels of a class-folder tree are the sorted folder index: the names say what they are
      if (data.classes) written.push(await writeIdxClasses(f.out, data.classes));
    }
    for (const name of corruptions) {
      for (const s of severities) {
        const images = new Uint8Array(data.images.length);
        for (let off = 0; off < data.count; off += CHUNK) {
          const n = Math.min(CHUNK, data.count - off);
          const t0 = performance.now();
          const out = corruptImages({ ...data, count: n, images: data.images.subarray(off * per, (off + n) * per) }, name, s, { seed, offset: off });
          corruptMs += performance.now() - t0;
          images.set(out, off * per);
          done += n;
          progress({ stage: 'corrupt', done, total, info: `${name} ${s}` });
        }
        const d: Dataset = { ...data, images };
        if (format === 'idx') {
          written.push((await writeIdxDataset(f.out, `${name}-${s}`, d, { sharedLabels: true })).images);
        } else {
          const dir = join(f.out, name, String(s));
          await writeImageFolder(d, dir);
          written.push(dir);
        }
      }
    }
    result.out = { dir: f.out, format, corruptions, severities, files: written.length, corruptedImages: total, corruptSeconds: +(corruptMs / 1000).toFixed(3), imagesPerSecond: Math.round(total / (corruptMs / 1000)) };
  }
  if (f.json) printJson(result);
  else if (!f.quiet) {
    const o = result.out as { imagesPerSecond?: number; files?: number } | undefined;
    if (o) process.stderr.write(`wrote ${o.files} files to ${f.out} (${o.imagesPerSecond} images/s corrupting)\n`);
    if (result.video) process.stderr.write(`wrote ${f.video} and its labels sidecar\n`);
    if (result.contactSheet) process.stderr.write(`wrote ${result.contactSheet as string}\n`);
  }
  return EXIT.ok;
}
