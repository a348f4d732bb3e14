// `ttaq profile`: where a session's time went, from the profile onnxruntime writes when a command
// runs with TTAQ_ORT_PROFILE=<prefix> (one file per session, written when the session closes):
// time per run, per op type and per node, so a figure about where time goes comes from a command.
import { readFileSync } from 'node:fs';
import { EXIT, intFlag, parseFlags, printJson, reportError } from './lib/cli.ts';
import { TtaqError } from '../sdk/errors/index.ts';
import { summarizeProfile, type ProfileSummary } from '../sdk/runtime/index.ts';

export const summary = 'summarise onnxruntime profiles (TTAQ_ORT_PROFILE=<prefix>): time per run, per op type and per node';

const HELP = `usage: ttaq profile <profile.json>... [--top N] [--json]

Reads profiles that onnxruntime wrote for sessions of a command run with TTAQ_ORT_PROFILE set to a
file prefix, e.g.
  TTAQ_ORT_PROFILE=/tmp/prof/recon node --import tsx sdk/quant/bench.ts --block layer3.1 --variant qdrop
  ttaq profile $(ls -S /tmp/prof/recon_*.json | head -1)
(each session writes <prefix>_<date>.json when it closes; the largest file is usually the busiest
session). Prints per file: runs, the median run inside onnxruntime, the kernels' sum per run, then
microseconds per run by op type and the most expensive nodes with their input shapes.

options:
  --top N     nodes listed (default 25)
  --json      machine-readable output
  -h, --help  this text

exit codes: 0 ok, 2 bad usage or a file that is no onnxruntime profile`;

const us = (x: number): string => x.toFixed(1).padStart(9);

export function renderProfile(file: string, s: ProfileSummary, top: number): string {
  const lines = [
    `${file}: ${s.runs} runs, median run ${(s.medianRunUs / 1000).toFixed(3)} ms, kernels ${(s.kernelUsPerRun / 1000).toFixed(3)} ms per run, ${s.nodes} nodes`,
    '',
    '   us/run  share  nodes  op type',
    ...s.ops.map((o) => `${us(o.usPerRun)} ${((100 * o.usPerRun) / s.kernelUsPerRun).toFixed(1).padStart(5)} % ${String(o.nodes).padStart(6)}  ${o.op}`),
    '',
    '   us/run  op type             node  (input shapes)',
    ...s.top.slice(0, top).map((n) => `${us(n.usPerRun)}  ${n.op.padEnd(18)}  ${n.node}  (${n.inputs.map((i) => i || 'scalar').join(', ')})`),
  ];
  return lines.join('\n') + '\n';
}

export async function run(argv: string[]): Promise<number> {
  try {
    const f = parseFlags(argv, { top: { type: 'string' }, json: { type: 'boolean' } }, HELP);
    if (!f) return EXIT.ok;
    const files = f.positionals;
    if (files.length === 0) throw new TtaqError('CLI_USAGE', `name at least one profile file\n\n${HELP}`);
    const top = intFlag(f.values.top, 'top', 1) ?? 25;
    const out: { file: string; summary: ProfileSummary }[] = [];
    for (const file of files) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        throw new TtaqError('DATA_NOT_FOUND', `${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); profiles are written as <prefix>_<date>.json when a session closes`);
      }
      let events: unknown;
      try {
        events = JSON.parse(text);
      } catch {
        throw new TtaqError('DATA_BAD_FORMAT', `${file}: not JSON; an onnxruntime profile is a JSON array of trace events (a profile cut short by a crash has no closing bracket: rerun the command)`);
      }
      out.push({ file, summary: summarizeProfile(events, file) });
    }
    if (f.values.json) printJson(out.map((o) => ({ file: o.file, ...o.summary, top: o.summary.top.slice(0, top) })));
    else process.stdout.write(out.map((o) => renderProfile(o.file, o.summary, top)).join('\n'));
    return EXIT.ok;
  } catch (e) {
    return reportError(e);
  }
}
