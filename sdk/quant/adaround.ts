// AdaRound's weight quantizer and rounding regulariser as one op with its own gradient rule, over
// all weights of a block at once (their V concatenated into one vector), for the reconstruction
// graphs.
//
//   h  = clip(σ(V)(ζ − γ) + γ, 0, 1)
//   Ŵ  = s·(clip(⌊W/s⌋ + h + z, qmin, qmax) − z)
//   R  = Σ 1 − |2h − 1|^β, written Exp(β/2 · Log((2h − 1)² + 1e-30)) (see ReconFormulation.roundReg)
//
// Written with plain ops per layer, sdk/autodiff emits about forty nodes per weighted layer (each
// Clip's masks, the sigmoid's derivative, the power's chain) on tensors of a few thousand elements,
// where onnxruntime's per-node cost outweighs the arithmetic: a layer2.0 reconstruction step had
// 251 nodes with them and has 167 with this op. Here the forward op also outputs dŴ/dV and dR/dV, so the rule is two Muls
// and an Add over the concatenated V, and one op covers every layer of the block (the layers'
// Ŵ are Split from its output). Per-element scale, zero point and clip bounds make layers with
// different widths or per-channel parameters one vector.
//   dŴ/dV = s · [qmin ≤ r ≤ qmax] · [0 ≤ ĥ ≤ 1] · (ζ − γ)·σ(V)(1 − σ(V)),  r = ⌊W/s⌋ + h + z, ĥ the unclipped h
//   dR/dV = −4·(β/2)·c·|c|^β / (c² + 1e-30) · [0 ≤ ĥ ≤ 1] · (ζ − γ)·σ(V)(1 − σ(V)),  c = 2h − 1
// The masks pass the bounds themselves, as sdk/autodiff's Clip rule does.
// onnxruntime runs the op as a model-local function (FunctionProto), inlined at session creation.
import { create, toBinary } from '@bufbuild/protobuf';
import { AttributeProto_AttributeType, AttributeProtoSchema, FunctionProtoSchema, NodeProtoSchema, OperatorSetIdProtoSchema } from 'onnx-buf';
import { registerRule } from '../autodiff/index.ts';
import { LSQ_DOMAIN } from './lsq.ts';

export const ADAROUND_ZETA = 1.1;
export const ADAROUND_GAMMA = -0.1;

/** Inputs (v, floor, scale, zero point, qmin, qmax, β/2), the middle four broadcastable to v
 * (per-element vectors or scalars). Outputs (Ŵ, R, dŴ/dV, dR/dV); R is a scalar. */
export const ADAROUND_OP = 'AdaRoundWeights';

type Attr = { readonly name: string; readonly f?: number; readonly i?: number };
const node = (opType: string, input: string[], output: string[], attrs: readonly Attr[] = []) => create(NodeProtoSchema, {
  opType, domain: '', input, output,
  attribute: attrs.map((a) => create(AttributeProtoSchema, a.f !== undefined
    ? { name: a.name, type: AttributeProto_AttributeType.FLOAT, f: a.f }
    : { name: a.name, type: AttributeProto_AttributeType.INT, i: BigInt(a.i!) })),
});
const constant = (name: string, value: number) => node('Constant', [], [name], [{ name: 'value_float', f: value }]);

/** The encoded FunctionProto of the op (Model.functions), body at default-domain `opset` (>= 13). */
export function adaRoundFunction(opset: number): Uint8Array {
  const fn = create(FunctionProtoSchema, {
    name: ADAROUND_OP,
    domain: LSQ_DOMAIN,
    input: ['v', 'floor', 'scale', 'zp', 'lo', 'hi', 'half_beta'],
    output: ['w', 'reg', 'dw_dv', 'dreg_dv'],
    node: [
      constant('k_span', ADAROUND_ZETA - ADAROUND_GAMMA),
      constant('k_gamma', ADAROUND_GAMMA),
      constant('k0', 0),
      constant('k1', 1),
      constant('k2', 2),
      constant('k_tiny', 1e-30),
      constant('k_m4', -4),
      node('Sigmoid', ['v'], ['sig']),
      node('Mul', ['sig', 'k_span'], ['sig_span']),
      node('Add', ['sig_span', 'k_gamma'], ['h_raw']),
      node('Clip', ['h_raw', 'k0', 'k1'], ['h']),
      node('Equal', ['h', 'h_raw'], ['h_inside']),
      node('Add', ['floor', 'h'], ['fh']),
      node('Add', ['fh', 'zp'], ['r']),
      node('Min', ['r', 'hi'], ['r_hi']),
      node('Max', ['r_hi', 'lo'], ['q']),
      node('Equal', ['q', 'r'], ['q_inside']),
      node('Sub', ['q', 'zp'], ['qz']),
      node('Mul', ['qz', 'scale'], ['w']),
      // dh/dV
      node('Sub', ['k1', 'sig'], ['one_minus']),
      node('Mul', ['sig', 'one_minus'], ['dsig']),
      node('Mul', ['dsig', 'k_span'], ['dsig_span']),
      node('Where', ['h_inside', 'dsig_span', 'k0'], ['dh']),
      node('Mul', ['dh', 'scale'], ['dh_scale']),
      node('Where', ['q_inside', 'dh_scale', 'k0'], ['dw_dv']),
      // the regulariser and dR/dV
      node('Mul', ['h', 'k2'], ['h2']),
      node('Sub', ['h2', 'k1'], ['c']),
      node('Mul', ['c', 'c'], ['cc0']),
      node('Add', ['cc0', 'k_tiny'], ['cc']),
      node('Log', ['cc'], ['log_cc']),
      node('Mul', ['log_cc', 'half_beta'], ['pw']),
      node('Exp', ['pw'], ['t']),
      node('Sub', ['k1', 't'], ['terms']),
      node('ReduceSum', ['terms'], ['reg'], [{ name: 'keepdims', i: 0 }]),
      node('Mul', ['c', 't'], ['ct']),
      node('Div', ['ct', 'cc'], ['ct_cc']),
      node('Mul', ['half_beta', 'k_m4'], ['m4hb']),
      node('Mul', ['ct_cc', 'm4hb'], ['dreg_dh']),
      node('Mul', ['dreg_dh', 'dh'], ['dreg_dv']),
    ],
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(Math.max(opset, 13)) })],
  });
  return toBinary(FunctionProtoSchema, fn);
}

registerRule({
  opType: ADAROUND_OP,
  domain: LSQ_DOMAIN,
  nonDiffInputs: [1, 2, 3, 4, 5, 6],
  backward(c) {
    const [, , dwDv, dregDv] = c.node.outputs as [string, string, string, string];
    const [gw, greg] = c.gy;
    const parts = [gw ? c.b.op1('Mul', [gw, dwDv]) : null, greg ? c.b.op1('Mul', [greg, dregDv]) : null].filter((p): p is string => !!p);
    const gv = !c.needs[0] || parts.length === 0 ? null : parts.length === 1 ? parts[0]! : c.b.op1('Add', parts);
    return [gv, ...c.node.inputs.slice(1).map(() => null)];
  },
});
