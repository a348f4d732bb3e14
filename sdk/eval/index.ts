// sdk/eval: the evaluation protocols over models x adaptation methods, with paper-style tables, and
// a journal of finished rows that lets an interrupted run resume.
//
//   const models = [await loadEvalModel('models/resnet20-fmnist.onnx')];
//   const p = getProtocol('continual');            // continual | imbalanced | camera | longrun
//   const blocks = await corruptedFashionMnist({ severity: p.severity, order: p.order, seed: 0, classes: 10 });
//     (or folderDomains(dir, ...) for IDX pairs per domain / an ImageNet-C tree)
//   const rows = await evaluate(models, ['source', 'bn', 'tent', 'abl'], blocks,
//                               { protocol: p.name, batch: p.batch, passes: p.passes, order: p.order, seed: 0 });
//   markdownTable(rows)                             // | model | method | gauss | ... | mean |
//   measureStepCost(model, ['tent', 'abl:robust'], [1, 8, 64])  // adapt step vs inference time
//   await writeStabilityPng('out.png', rows)        // error per pass and per domain within passes
import { readModelBytes } from '../onnx/io.ts';
import { checkModelHash, manifestPathFor, readManifest } from '../manifest/index.ts';
import type { EvalModel } from './run.ts';

export { corruptedFashionMnist, dataLayout, defaultIdxDomains, folderDomains, orderDomain, type DomainBlock, type DomainOptions } from './domains.ts';
export { describeOrder, describeRun, getProtocol, PROTOCOLS, SHORT_DOMAIN, type Protocol, type RunDescription } from './protocols.ts';
export { evaluate, evaluateOne, mergeOptions, parseMethodSpec, parseOptionPairs, rowKey, type EvalModel, type EvalRow, type EvalRunOptions } from './run.ts';
export { EvalJournal, journalPathFor, readJournal, type JournalRead } from './journal.ts';
export { dataFingerprint } from './fingerprint.ts';
export { domainHeads, markdownTable, runSummary } from './table.ts';
export { measureStepCost, syntheticBatch, timingTable, type StepCost } from './timing.ts';
export { stabilitySvg, writeStabilityPng, type PlotOptions } from './plot.ts';

/** Reads a model and the manifest beside it, checking the model's SHA-256 against the manifest. */
export async function loadEvalModel(path: string, name?: string): Promise<EvalModel> {
  const bytes = await readModelBytes(path);
  const manifest = await readManifest(manifestPathFor(path));
  checkModelHash(manifest, bytes, path);
  return { name: name ?? manifest.name, model: bytes, manifest };
}
