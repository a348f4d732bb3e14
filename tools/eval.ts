// `ttaq eval`: runs an evaluation protocol over models x adaptation methods and prints the
// paper-style error table (Markdown, or JSON with --json); --timing measures the adapt step
// against inference instead.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { parseAdaptOptions, type AdaptOptionsInput } from '../sdk/adapt/index.ts';
import { parseCorruptionList } from '../sdk/data/index.ts';
import { TtaqError } from '../sdk/errors/index.ts';
import {
  corruptedFashionMnist, dataFingerprint, dataLayout, describeRun, EvalJournal, evaluate, writeStabilityPng, folderDomains, getProtocol, journalPathFor, loadEvalModel, markdownTable, measureStepCost, mergeOptions,
  parseMethodSpec, parseOptionPairs, PROTOCOLS, readJournal, rowKey, runSummary, timingTable, type DomainBlock, type EvalRow,
} from '../sdk/eval/index.ts';
import { EXIT, intFlag, parseFlags, prepareOutputFile, printJson } from './lib/cli.ts';
import { progressPrinter } from './lib/progress.ts';
import { DEFAULT_MODEL_PATH } from '../sdk/bundled/index.ts';

export const summary = 'evaluate models x adaptation methods on the continual / imbalanced / camera / long-run protocols';

const help = `usage: ttaq eval [--model <m.onnx>[,<m2.onnx>]] [--method source,bn,tent,eata,abl] [options]

Runs a protocol (--protocol below) for every model x method and prints the error (%) per domain and
the mean as a Markdown table. Each model needs its <model>.manifest.json beside it.

  --model <paths>          comma-separated ONNX models (default: the bundled models/resnet20-fmnist.onnx); repeatable
  --method <list>          source, bn, tent, eata, abl (= ttaq); a suffix picks the normalisation
                           (abl:robust, tent:batch, bn:robust) and '@key=value,...' overrides options
                           for that method only (abl:robust@abl.tau=0,abl.freqExp=0); separate methods
                           with ';' when overrides are used, else ',' (default source,bn,tent,abl)
  --protocol <name>        ${Object.values(PROTOCOLS).map((p) => `${p.name} (${p.description}; batch ${p.batch}, ${p.passes} pass${p.passes > 1 ? 'es' : ''})`).join('\n                           ')}
                           default continual
  --data <dir>             external domains instead of Fashion-MNIST corrupted on the fly: a folder
                           with one IDX pair per domain (<domain>-images-idx3-ubyte[.gz] with
                           <domain>-labels-idx1-ubyte[.gz] or a shared labels-idx1-ubyte[.gz]; an
                           optional classes.txt names label i on line i, matched to the model's
                           labels as class folders are, as ttaq corrupt writes it), or an
                           ImageNet-C tree <dir>/<corruption>/<severity>/<class>/<image> whose class
                           folders are named after the model's labels ('/' as '_'; case, spaces,
                           '_' and '-' aside) or numbered 0, 1, ... (1..K read as 1-based), or are
                           as many as the labels (then taken in sorted order, with a note)
  --domains <a,b,c>        domains in visiting order (default: the 15 corruptions / every domain found);
                           with --data, a domain's file name (fog-3) or, in an IDX folder from
                           ttaq corrupt, a corruption's plain name (fog: each of its files present,
                           fog-1 ... fog-5 in severity order; with --severity, only its file at that one)
  --severity <1-5>         corruption severity (default 5)
  --batch <n>              batch size (default: the protocol's)
  --passes <n>             passes over the domain sequence (default: the protocol's)
  --limit <n>              at most n samples per domain (default: all)
  --seed <s>               seed of corruption, order and shuffles (default 0)
  --lr <x>                 learning rate of the adapted BN parameters (default: method preset, 1e-3)
  --set <key=value>        any adapter option (sdk/adapt/options.ts), dotted for ABL: --set abl.tau=0
                           --set norm=robust --set collapseEntropy=0; repeatable
  --threads <n>            onnxruntime intra-op threads (default: one per core)
  --timing                 measure adapt-step vs inference time (batches 1,8,64) instead of a protocol
  --timing-batches <list>  batch sizes for --timing (default 1,8,64)
  --out <file>             also write the table (.md) or the JSON (.json) to a file; rows are
                           kept in <file>.partial.json as they finish, so the same command run
                           again after a crash or Ctrl-C resumes from them
  --plot <file.png>        also draw the error per pass and per domain within passes (one line per
                           model x method) as a PNG, e.g. for --protocol longrun
  --json                   print JSON (rows with per-domain and per-pass errors, counters, time)
  --quiet                  no progress output
Exit codes: 0 ok, 1 failed, 2 bad usage or input.`;


/** --set pairs into adapter options, validated (usage error, exit 2). */
export function parseSetFlags(sets: readonly string[]): AdaptOptionsInput {
  const out = parseOptionPairs(sets, '--set') as AdaptOptionsInput;
  checkOptions(out, '--set');
  return out;
}

function checkOptions(o: AdaptOptionsInput, where: string): void {
  try {
    parseAdaptOptions(o, where);
  } catch (e) {
    if (e instanceof TtaqError) throw new TtaqError('CLI_USAGE', e.message);
    throw e;
  }
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseFlags(argv, {
    model: { type: 'string', multiple: true }, method: { type: 'string' }, protocol: { type: 'string' }, data: { type: 'string' },
    domains: { type: 'string' }, severity: { type: 'string' }, batch: { type: 'string' }, passes: { type: 'string' },
    limit: { type: 'string' }, seed: { type: 'string' }, lr: { type: 'string' }, set: { type: 'string', multiple: true },
    threads: { type: 'string' }, timing: { type: 'boolean' }, 'timing-batches': { type: 'string' }, out: { type: 'string' },
    json: { type: 'boolean' }, quiet: { type: 'boolean' }, plot: { type: 'string' },
  }, help);
  if (!parsed) return EXIT.ok;
  const f = parsed.values;
  if (f.plot !== undefined && !f.plot.toLowerCase().endsWith('.png')) throw new TtaqError('CLI_USAGE', `--plot ${f.plot}: the plot is written as PNG; give a file name ending in .png`);
  if (f.plot !== undefined && f.timing) throw new TtaqError('CLI_USAGE', '--plot draws protocol results; it does not apply to --timing');
  if (parsed.positionals.length > 0) throw new TtaqError('CLI_USAGE', `unexpected argument '${parsed.positionals[0]}'\n\n${help}`);

  const modelPaths = (f.model ?? [DEFAULT_MODEL_PATH]).flatMap((m) => m.split(',')).map((s) => s.trim()).filter(Boolean);
  for (const p of modelPaths) {
    if (!existsSync(p)) throw new TtaqError('CLI_USAGE', `--model ${p} does not exist${p === DEFAULT_MODEL_PATH ? ' (the bundled model: train it with ttaq train, or pass --model)' : ''}`);
  }
  const methodText = f.method ?? 'source,bn,tent,abl';
  const methods = methodText.split(methodText.includes('@') || methodText.includes(';') ? ';' : ',').map((s) => s.trim()).filter(Boolean);
  if (methods.length === 0) throw new TtaqError('CLI_USAGE', `--method '${methodText}' names no method; use source, bn, tent, eata, abl or ttaq (e.g. --method source,bn,tent,abl)`);
  const protocol = getProtocol(f.protocol ?? 'continual');
  const batch = intFlag(f.batch, 'batch', 1) ?? protocol.batch;
  const passes = intFlag(f.passes, 'passes', 1) ?? protocol.passes;
  const severity = intFlag(f.severity, 'severity', 1) ?? protocol.severity;
  if (severity > 5) throw new TtaqError('CLI_USAGE', `--severity ${severity}: use 1 to 5`);
  const limit = intFlag(f.limit, 'limit', 1);
  const seed = intFlag(f.seed, 'seed', 0) ?? 0;
  const threads = intFlag(f.threads, 'threads', 1);
  const adapt: AdaptOptionsInput = parseSetFlags(f.set ?? []);
  if (f.lr !== undefined) {
    const lr = Number(f.lr);
    if (!(lr > 0)) throw new TtaqError('CLI_USAGE', `--lr ${f.lr}: expected a positive number`);
    adapt.lr = lr;
  }
  for (const m of methods) parseMethod(m, adapt);
  const session = threads !== undefined ? { intraOpThreads: threads } : undefined;
  // the results are written after the whole run: a bad path is found now, not then
  if (f.out !== undefined) prepareOutputFile(f.out, '--out');
  if (f.plot !== undefined) prepareOutputFile(f.plot, '--plot');
  const progress = progressPrinter(process.stderr, f.quiet ?? false);
  const models = await Promise.all(modelPaths.map((p) => loadEvalModel(p)));

  if (f.timing) {
    const batches = (f['timing-batches'] ?? '1,8,64').split(',').map((s) => intFlag(s.trim(), 'timing-batches', 1)!);
    const all = [];
    for (const m of models) {
      const rows = await measureStepCost(m, methods, batches, { adapt, ...(session ? { session } : {}) });
      all.push({ model: m.name, rows });
    }
    if (f.json) printJson({ timing: all });
    else for (const t of all) process.stdout.write(`${t.model}\n\n${timingTable(t.rows)}\n`);
    if (f.out) await writeFile(f.out, f.out.endsWith('.json') ? JSON.stringify({ timing: all }, null, 2) : all.map((t) => `${t.model}\n\n${timingTable(t.rows)}`).join('\n'));
    return EXIT.ok;
  }

  const classes = models[0]!.manifest.labels.length;
  for (const m of models) {
    if (m.manifest.labels.length !== classes) throw new TtaqError('CLI_USAGE', `models disagree on the number of classes (${classes} vs ${m.manifest.labels.length} in ${m.name}); evaluate them separately`);
  }
  const domains = f.domains ? (f.data ? f.domains.split(',').map((s) => s.trim()).filter(Boolean) : parseCorruptionList(f.domains)) : undefined;
  const pre = models[0]!.manifest.preprocess;
  const note = (line: string): void => { if (!f.quiet) process.stderr.write(`note: ${line}\n`); };
  // a plain corruption name in --domains (fog) is every severity of it written by `ttaq corrupt`,
  // unless --severity picks one
  const plainName = f.severity === undefined ? 'all' as const : 'severity' as const;
  const domOpts = { domains, severity, plainName, order: protocol.order, seed, limit, classes, labels: models[0]!.manifest.labels, onProgress: progress, onNote: note };
  const blocks: DomainBlock[] = f.data
    ? await folderDomains(f.data, { ...domOpts, fit: pre })
    : await corruptedFashionMnist(domOpts);

  // With --out, finished rows go to a journal as they finish: a rerun of the same command after a
  // crash or Ctrl-C takes them from there and runs only the rest (sdk/eval/journal.ts).
  let journal: EvalJournal | undefined;
  let finished: ReadonlyMap<string, EvalRow> | undefined;
  if (f.out) {
    const path = journalPathFor(f.out);
    // dataFiles: rows computed on data that has since been rewritten must not be reused
    const settings = JSON.stringify({
      protocol: protocol.name, order: protocol.order, batch, passes, severity, seed, limit: limit ?? null, data: f.data ? resolve(f.data) : 'fashion-mnist',
      dataFiles: f.data ? dataFingerprint(f.data) : null, domains: blocks.map((b) => [b.name, b.data.count]), adapt,
    });
    const read = readJournal(path, settings);
    if (read.kind === 'resumed') {
      finished = read.rows;
      const here = models.flatMap((m) => methods.map((x) => rowKey(m, x))).filter((k) => read.rows.has(k)).length;
      note(`resuming from ${path}: ${here} of ${models.length * methods.length} rows finished earlier (delete the file to run them again)`);
    } else if (read.kind === 'stale') {
      note(`${path} is ${read.why}; this run starts over and replaces it`);
    }
    journal = new EvalJournal(path, settings, finished);
  }
  const rows = await evaluate(models, methods, blocks, {
    protocol: protocol.name, batch, passes, order: protocol.order, seed, adapt, ...(session ? { session } : {}), onProgress: progress,
    ...(finished ? { finished } : {}), ...(journal ? { onRow: (row: EvalRow, key: string) => journal!.add(key, row) } : {}),
  });
  const result = {
    protocol: protocol.name, batch, passes, severity, seed, limit: limit ?? null, data: f.data ?? 'fashion-mnist (corrupted on the fly)',
    methods, adapt, rows,
  };
  const table = markdownTable(rows);
  if (f.json) printJson(result);
  else {
    const header = describeRun({
      protocol, domains: blocks.map((b) => b.name), source: f.data ?? 'Fashion-MNIST test set corrupted on the fly', batch, passes, limit,
      // IDX domains are files named by the user or by `ttaq corrupt` (which puts the severity in the name)
      severity: f.data && dataLayout(f.data) === 'idx' ? undefined : severity,
    });
    process.stdout.write(`${header}\n\n${table}\n${runSummary(rows)}`);
  }
  if (f.out) await writeFile(f.out, f.out.endsWith('.json') ? JSON.stringify(result, null, 2) + '\n' : table);
  if (f.plot) await writeStabilityPng(f.plot, rows, { title: `${protocol.name}, batch ${batch}, ${passes} pass${passes > 1 ? 'es' : ''}${limit ? `, ${limit} per domain` : ''}: error per pass (top), per domain within passes (bottom)` });
  journal?.remove();
  return EXIT.ok;
}

/** Validates a method spec early (usage error, exit 2). */
function parseMethod(m: string, adapt: AdaptOptionsInput): void {
  const spec = parseMethodSpec(m);
  const [name, norm] = spec.method.split(':');
  if (!['source', 'bn', 'tent', 'eata', 'abl', 'ttaq'].includes(name ?? '') || (norm !== undefined && !['source', 'batch', 'robust'].includes(norm))) {
    throw new TtaqError('CLI_USAGE', `--method ${m}: use source, bn, tent, eata, abl or ttaq, optionally with :source, :batch or :robust, and @key=value,... overrides`);
  }
  checkOptions(mergeOptions(adapt as Record<string, unknown>, spec.options as Record<string, unknown>) as AdaptOptionsInput, `--method ${m}`);
}
