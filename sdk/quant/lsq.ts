// LSQ fake quantization as one op with its own gradient rule, for the reconstruction graphs.
//
//   y = s·(clip(round(x/s) + z, qmin, qmax) − z)
//   dy/dx = 1 inside the range, 0 outside (straight-through Round)
//   dy/ds = round(x/s) − x/s inside, qmin − z / qmax − z outside (LSQ)
//
// Written with plain ops (Div, Round, Clip, Mul), sdk/autodiff derives exactly these gradients but
// through the rules of each op: about ten activation-sized tensors per quantizer and step (the
// Clip masks, s·dy, dy/s, the two step terms). Here the forward op also outputs the mask
// `inside` and the step factor `ds_dy`, and the rule needs one Where for dx and one Mul + sum for ds.
// onnxruntime runs the op as a model-local function (FunctionProto), inlined at session creation.
import { create, toBinary } from '@bufbuild/protobuf';
import { FunctionProtoSchema, NodeProtoSchema, OperatorSetIdProtoSchema } from 'onnx-buf';
import { registerRule } from '../autodiff/index.ts';

export const LSQ_DOMAIN = 'ttaq.recon';
/** Inputs (x, s, qmin, qmax), zero point 0. Outputs (y, inside, ds_dy). */
export const LSQ_OP = 'LsqFakeQuant';
/** Inputs (x, s, z, qmin, qmax), z a float scalar. Outputs (y, inside, ds_dy). */
export const LSQ_OP_Z = 'LsqFakeQuantZ';

const node = (opType: string, input: string[], output: string[]) => create(NodeProtoSchema, { opType, domain: '', input, output });

/** The encoded FunctionProtos of both ops (Model.functions), body at default-domain `opset`. */
export function lsqFunctions(opset: number): Uint8Array[] {
  const imports = [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(opset) })];
  const plain = create(FunctionProtoSchema, {
    name: LSQ_OP,
    domain: LSQ_DOMAIN,
    input: ['x', 's', 'lo', 'hi'],
    output: ['y', 'inside', 'ds_dy'],
    node: [
      node('Div', ['x', 's'], ['u']),
      node('Round', ['u'], ['q']),
      node('Clip', ['q', 'lo', 'hi'], ['c']),
      node('Mul', ['c', 's'], ['y']),
      node('Equal', ['c', 'q'], ['inside']),
      node('Sub', ['q', 'u'], ['f']),
      node('Where', ['inside', 'f', 'c'], ['ds_dy']),
    ],
    opsetImport: imports,
  });
  const withZ = create(FunctionProtoSchema, {
    name: LSQ_OP_Z,
    domain: LSQ_DOMAIN,
    input: ['x', 's', 'z', 'lo', 'hi'],
    output: ['y', 'inside', 'ds_dy'],
    node: [
      node('Div', ['x', 's'], ['u']),
      node('Round', ['u'], ['q']),
      node('Add', ['q', 'z'], ['r']),
      node('Clip', ['r', 'lo', 'hi'], ['c']),
      node('Sub', ['c', 'z'], ['cz']),
      node('Mul', ['cz', 's'], ['y']),
      node('Equal', ['c', 'r'], ['inside']),
      node('Sub', ['q', 'u'], ['f']),
      node('Where', ['inside', 'f', 'cz'], ['ds_dy']),
    ],
    opsetImport: imports,
  });
  return [toBinary(FunctionProtoSchema, plain), toBinary(FunctionProtoSchema, withZ)];
}

for (const opType of [LSQ_OP, LSQ_OP_Z]) {
  registerRule({
    opType,
    domain: LSQ_DOMAIN,
    nonDiffInputs: opType === LSQ_OP ? [2, 3] : [2, 3, 4],
    backward(c) {
      const [x, s] = c.node.inputs as [string, string];
      const [, inside, dsDy] = c.node.outputs as [string, string, string];
      const g = c.gy[0];
      if (!g) return c.node.inputs.map(() => null);
      return [
        c.needs[0] ? c.unbroadcast(c.b.op1('Where', [inside, g, c.scalar(0, x)]), x) : null,
        c.needs[1] ? c.unbroadcast(c.b.op1('Mul', [g, dsDy]), s) : null,
        ...c.node.inputs.slice(2).map(() => null),
      ];
    },
  });
}
