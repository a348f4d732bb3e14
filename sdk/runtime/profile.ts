// Where a session's time goes: a summary of the profile onnxruntime writes for a session made with
// `profilePrefix` (or $TTAQ_ORT_PROFILE). The file is Chrome-trace JSON: one 'Session' event per
// run ('model_run') and, per run, one 'Node' event per kernel ('<node>_kernel_time', with the op
// type and the input and output shapes). Pure: parse the file elsewhere, pass the events here.
import { TtaqError } from '../errors/index.ts';

export interface ProfileEvent {
  readonly cat?: string;
  readonly name?: string;
  readonly dur?: number;
  readonly args?: { readonly op_name?: string; readonly input_type_shape?: readonly Record<string, readonly number[]>[] };
}

export interface ProfileNode {
  readonly node: string;
  readonly op: string;
  /** Mean kernel time per run, microseconds. */
  readonly usPerRun: number;
  /** Input shapes as 'AxBxC' (scalars as ''). */
  readonly inputs: readonly string[];
}

export interface ProfileSummary {
  readonly runs: number;
  /** Median wall time of one run inside onnxruntime, microseconds. */
  readonly medianRunUs: number;
  /** Sum of all kernels' times per run (the rest of a run is onnxruntime's own overhead). */
  readonly kernelUsPerRun: number;
  readonly nodes: number;
  /** Per op type, most expensive first. */
  readonly ops: readonly { readonly op: string; readonly usPerRun: number; readonly nodes: number }[];
  /** Per node, most expensive first. */
  readonly top: readonly ProfileNode[];
}

const KERNEL = '_kernel_time';

export function summarizeProfile(events: unknown, source = 'profile'): ProfileSummary {
  if (!Array.isArray(events)) {
    throw new TtaqError('DATA_BAD_FORMAT', `${source}: not an onnxruntime profile (expected a JSON array of trace events); write one with TTAQ_ORT_PROFILE=<prefix> or SessionOptions.profilePrefix`);
  }
  const evs = events as ProfileEvent[];
  const runs = evs.filter((e) => e.cat === 'Session' && e.name === 'model_run').map((e) => e.dur ?? 0);
  if (runs.length === 0) {
    throw new TtaqError('DATA_BAD_FORMAT', `${source}: the profile holds no run ('model_run' events); profile a session that ran at least once`);
  }
  const byNode = new Map<string, { op: string; us: number; inputs: string[] }>();
  for (const e of evs) {
    if (e.cat !== 'Node' || !e.name?.endsWith(KERNEL)) continue;
    const node = e.name.slice(0, -KERNEL.length);
    const acc = byNode.get(node) ?? { op: e.args?.op_name ?? '?', us: 0, inputs: (e.args?.input_type_shape ?? []).map((t) => (Object.values(t)[0] ?? []).join('x')) };
    acc.us += e.dur ?? 0;
    byNode.set(node, acc);
  }
  const n = runs.length;
  const ops = new Map<string, { us: number; nodes: number }>();
  for (const v of byNode.values()) {
    const o = ops.get(v.op) ?? { us: 0, nodes: 0 };
    o.us += v.us;
    o.nodes++;
    ops.set(v.op, o);
  }
  const sorted = [...runs].sort((a, b) => a - b);
  return {
    runs: n,
    medianRunUs: n % 2 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2,
    kernelUsPerRun: [...byNode.values()].reduce((s, v) => s + v.us, 0) / n,
    nodes: byNode.size,
    ops: [...ops].map(([op, v]) => ({ op, usPerRun: v.us / n, nodes: v.nodes })).sort((a, b) => b.usPerRun - a.usPerRun),
    top: [...byNode].map(([node, v]) => ({ node, op: v.op, usPerRun: v.us / n, inputs: v.inputs })).sort((a, b) => b.usPerRun - a.usPerRun),
  };
}
