// `ttaq inspect <model.onnx>`: what is in a model file: versions, inputs and outputs, operator
// histogram, parameters by dtype, MACs per layer (batch 1), and whether BatchNorm is present or
// folded. A table for people, --json for scripts.
import { EXIT, parseFlags, printJson } from './lib/cli.ts';
import { isTtaqError, TtaqError } from '../sdk/errors/index.ts';
import { loadModel } from '../sdk/onnx/io.ts';
import { opHistogram } from '../sdk/onnx/graph.ts';
import { isSubByte, packedByteLength } from '../sdk/onnx/packing.ts';
import { inferShapes } from '../sdk/runtime/shapes.ts';
import { numel } from '../sdk/onnx/tensor.ts';
import type { DType, Dim, Model, ValueInfo } from '../sdk/onnx/types.ts';
import { getOpset } from '../sdk/onnx/versions.ts';

export const summary = 'show a model: opset, inputs/outputs, ops, parameters, MACs per layer, BN state';

const HELP = `usage: ttaq inspect <model.onnx> [--json] [--shape NAME=1x3x32x32 ...]

Shows the IR version and opset, inputs and outputs, an operator histogram, parameter count and
bytes by dtype, MACs per Conv/ConvTranspose/Gemm/MatMul layer at batch 1, and whether
BatchNormalization is present or looks folded into the convolutions.

options:
  --json            machine-readable output
  --shape NAME=DIMS concrete shape for an input with dynamic dims (repeatable); a dynamic
                    leading (batch) dim defaults to 1
  -h, --help        this text

exit codes: 0 ok, 1 failed, 2 bad usage or a file that is not a usable ONNX model`;

const BYTES: Record<DType, number> = {
  float32: 4, float64: 8, float16: 2, int8: 1, uint8: 1, int16: 2, uint16: 2, int32: 4, uint32: 4,
  int64: 8, uint64: 8, bool: 1, int4: 0.5, uint4: 0.5, int2: 0.25, uint2: 0.25,
};

export interface LayerMacs {
  readonly node: string;
  readonly op: string;
  readonly output: readonly number[];
  readonly macs: number;
}

export interface InspectReport {
  readonly file: string;
  readonly irVersion: number;
  readonly opset: number | null;
  readonly opsetImports: readonly { domain: string; version: number }[];
  readonly producer: string;
  readonly inputs: readonly { name: string; dtype: DType; shape: readonly Dim[] | null }[];
  readonly outputs: readonly { name: string; dtype: DType; shape: readonly Dim[] | null }[];
  readonly nodes: number;
  readonly ops: Readonly<Record<string, number>>;
  readonly parameters: { readonly count: number; readonly bytes: number; readonly byDtype: Readonly<Record<string, { count: number; bytes: number; tensors: number }>> };
  /** null when shapes could not be inferred (reason in macsError). */
  readonly macs: { readonly total: number; readonly batch: number; readonly layers: readonly LayerMacs[] } | null;
  readonly macsError?: string;
  readonly batchNorm: { readonly state: 'present' | 'folded' | 'none'; readonly bnNodes: number; readonly convsWithBias: number; readonly convs: number };
}

/** Parameter count and bytes by dtype: every initializer, sub-byte types at their packed size. */
export function parameterStats(m: Model): InspectReport['parameters'] {
  const byDtype: Record<string, { count: number; bytes: number; tensors: number }> = {};
  let count = 0, bytes = 0;
  for (const t of m.graph.initializers.values()) {
    const n = numel(t.dims);
    const b = isSubByte(t.dtype) ? packedByteLength(t.dtype, n) : n * BYTES[t.dtype];
    const e = (byDtype[t.dtype] ??= { count: 0, bytes: 0, tensors: 0 });
    e.count += n; e.bytes += b; e.tensors++;
    count += n; bytes += b;
  }
  return { count, bytes, byDtype };
}

/**
 * MACs of each Conv, ConvTranspose, Gemm and MatMul from inferred shapes:
 * Conv: output elements * (Cin/groups) * kernel area; ConvTranspose: input elements * (Cout/groups)
 * * kernel area; Gemm/MatMul: M*N*K (output elements * K).
 */
export function layerMacs(m: Model, shapes: ReadonlyMap<string, ValueInfo>): LayerMacs[] {
  const dims = (v: string | undefined): number[] | undefined => {
    const s = v ? shapes.get(v)?.shape : undefined;
    return s && s.every((d) => typeof d === 'number') ? (s as number[]) : undefined;
  };
  const rows: LayerMacs[] = [];
  for (const n of m.graph.nodes) {
    if (n.domain !== '') continue;
    const out = dims(n.outputs[0]);
    if (!out) continue;
    let macs: number | undefined;
    if (n.opType === 'Conv') {
      const w = dims(n.inputs[1]);
      if (w) macs = numel(out) * numel(w.slice(1));
    } else if (n.opType === 'ConvTranspose') {
      const x = dims(n.inputs[0]), w = dims(n.inputs[1]);
      if (x && w) macs = numel(x) * numel(w.slice(1));
    } else if (n.opType === 'Gemm') {
      const a = dims(n.inputs[0]);
      const transA = n.attrs.transA?.kind === 'int' && n.attrs.transA.value === 1;
      if (a && a.length === 2) macs = numel(out) * (transA ? a[0]! : a[1]!);
    } else if (n.opType === 'MatMul') {
      const a = dims(n.inputs[0]);
      if (a && a.length >= 1) macs = numel(out) * a[a.length - 1]!;
    }
    if (macs !== undefined) rows.push({ node: n.name, op: n.opType, output: out, macs });
  }
  return rows;
}

export function batchNormState(m: Model): InspectReport['batchNorm'] {
  const bnNodes = m.graph.nodes.filter((n) => n.opType === 'BatchNormalization').length;
  const convs = m.graph.nodes.filter((n) => n.opType === 'Conv');
  const convsWithBias = convs.filter((n) => (n.inputs[2] ?? '') !== '').length;
  const state = bnNodes > 0 ? 'present' : convsWithBias > 0 ? 'folded' : 'none';
  return { state, bnNodes, convsWithBias, convs: convs.length };
}

function parseShapes(list: readonly string[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const s of list) {
    const m = /^(.+)=(\d+(?:x\d+)*)$/.exec(s);
    if (!m) throw new TtaqError('CLI_USAGE', `--shape '${s}' is not NAME=DIMS (e.g. --shape input=1x3x32x32)`);
    out[m[1]!] = m[2]!.split('x').map(Number);
  }
  return out;
}

/** A --shape must name an input and agree with its static dims (only the dynamic ones are free). */
function checkShapeFlag(name: string, dims: readonly number[], inputs: readonly ValueInfo[]): void {
  const v = inputs.find((i) => i.name === name);
  if (!v) throw new TtaqError('CLI_USAGE', `--shape ${name}=...: the model has no input '${name}'; its inputs: ${inputs.map((i) => i.name).join(', ') || 'none'}`);
  if (!v.shape) return;
  const want = v.shape.map((d) => (typeof d === 'number' ? String(d) : '?')).join('x');
  const fits = v.shape.length === dims.length && v.shape.every((d, k) => typeof d !== 'number' || d === dims[k]);
  if (!fits) throw new TtaqError('CLI_USAGE', `--shape ${name}=${dims.join('x')} does not fit the input's shape ${want} ('?' marks the dims --shape may set)`);
}

/** Builds the report for a model already loaded. */
export async function inspectModel(m: Model, file: string, shapeFlags: Record<string, number[]> = {}): Promise<InspectReport> {
  const g = m.graph;
  // Dynamic leading dims default to batch 1; other dynamic dims need --shape.
  const inputShapes: Record<string, number[]> = { ...shapeFlags };
  for (const [name, dims] of Object.entries(shapeFlags)) checkShapeFlag(name, dims, g.inputs);
  for (const v of g.inputs) {
    if (inputShapes[v.name] || !v.shape) continue;
    if (v.shape.slice(1).every((d) => typeof d === 'number') && typeof v.shape[0] !== 'number') inputShapes[v.name] = [1, ...(v.shape.slice(1) as number[])];
  }
  let macs: InspectReport['macs'] = null;
  let macsError: string | undefined;
  try {
    const shapes = await inferShapes(m, { inputShapes });
    const first = g.inputs[0] ? shapes.get(g.inputs[0].name)?.shape?.[0] : 1;
    const batch = typeof first === 'number' && first > 0 ? first : 1;
    const layers = layerMacs(m, shapes).map((l) => ({ ...l, macs: l.macs / batch }));
    macs = { total: layers.reduce((a, l) => a + l.macs, 0), batch, layers };
  } catch (e) {
    if (!isTtaqError(e)) throw e;
    macsError = `${e.message} [${e.code}]`;
  }
  const info = (v: ValueInfo) => ({ name: v.name, dtype: v.dtype, shape: v.shape ? [...v.shape] : null });
  return {
    file,
    irVersion: m.irVersion,
    opset: getOpset(m) ?? null,
    opsetImports: m.opsetImports.map((o) => ({ domain: o.domain || 'ai.onnx', version: o.version })),
    producer: `${m.producerName}${m.producerVersion ? ' ' + m.producerVersion : ''}`.trim(),
    inputs: g.inputs.map(info),
    outputs: g.outputs.map(info),
    nodes: g.nodes.length,
    ops: Object.fromEntries([...opHistogram(g)].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))),
    parameters: parameterStats(m),
    macs,
    ...(macsError ? { macsError } : {}),
    batchNorm: batchNormState(m),
  };
}

const human = (n: number): string =>
  n >= 1e9 ? `${(n / 1e9).toFixed(2)} G` : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : `${n}`;
const fmtShape = (s: readonly Dim[] | null): string => (s ? `[${s.map((d) => d ?? '?').join(', ')}]` : '[?]');

function table(rows: readonly (readonly string[])[], right: ReadonlySet<number> = new Set()): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => '  ' + r.map((c, i) => (right.has(i) ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd()).join('\n');
}

export function formatReport(r: InspectReport): string {
  const out: string[] = [];
  out.push(`${r.file}`);
  out.push(`  IR version ${r.irVersion}, opset ${r.opsetImports.map((o) => `${o.domain} ${o.version}`).join(', ') || 'none'}${r.producer ? `, produced by ${r.producer}` : ''}`);
  out.push('', 'inputs:');
  out.push(table(r.inputs.map((v) => [v.name, v.dtype, fmtShape(v.shape)])));
  out.push('outputs:');
  out.push(table(r.outputs.map((v) => [v.name, v.dtype, fmtShape(v.shape)])));
  out.push('', `operators (${r.nodes} nodes):`);
  out.push(table(Object.entries(r.ops).map(([k, v]) => [k, String(v)]), new Set([1])));
  out.push('', `parameters: ${r.parameters.count.toLocaleString('en-US')} (${human(r.parameters.bytes)}B)`);
  const pd = Object.entries(r.parameters.byDtype).sort((a, b) => b[1].bytes - a[1].bytes);
  if (pd.length) out.push(table([['dtype', 'tensors', 'elements', 'bytes'], ...pd.map(([k, v]) => [k, String(v.tensors), v.count.toLocaleString('en-US'), v.bytes.toLocaleString('en-US')])], new Set([1, 2, 3])));
  out.push('');
  if (r.macs) {
    out.push(`MACs at batch 1: ${r.macs.total.toLocaleString('en-US')} (${human(r.macs.total)}MAC)${r.macs.batch !== 1 ? ` (model batch ${r.macs.batch}, divided per sample)` : ''}`);
    if (r.macs.layers.length) out.push(table([['layer', 'op', 'output', 'MACs', '%'], ...r.macs.layers.map((l) => [l.node, l.op, fmtShape(l.output), l.macs.toLocaleString('en-US'), r.macs!.total ? (100 * l.macs / r.macs!.total).toFixed(1) : '0'])], new Set([3, 4])));
  } else {
    out.push(`MACs: unavailable (${r.macsError})`);
  }
  const bn = r.batchNorm;
  out.push('', `BatchNorm: ${bn.state === 'present' ? `present (${bn.bnNodes} BatchNormalization node${bn.bnNodes > 1 ? 's' : ''})` : bn.state === 'folded' ? `likely folded (no BatchNormalization; ${bn.convsWithBias}/${bn.convs} convs have a bias)` : 'none (no BatchNormalization, no conv biases)'}`);
  return out.join('\n') + '\n';
}

/** Codes that mean the input (file or flags) is unusable: exit 2. */
export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, { json: { type: 'boolean' }, shape: { type: 'string', multiple: true } }, HELP);
  if (!flags) return EXIT.ok;
  const [file, ...extra] = flags.positionals;
  if (!file || extra.length) throw new TtaqError('CLI_USAGE', `${file ? 'one model file at a time' : 'missing the model file'}\n\n${HELP}`);
  const m = await loadModel(file);
  const report = await inspectModel(m, file, parseShapes(flags.values.shape ?? []));
  if (flags.values.json) printJson(report);
  else process.stdout.write(formatReport(report));
  return EXIT.ok;
}
