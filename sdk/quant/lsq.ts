// LSQ fake quantization as one op with its own gradient rule, for the reconstruction graphs.
//
//   y = s·(clip(round(x/s) + z, qmin, qmax) − z)
//   dy/dx = 1 inside the range, 0 outside (straight-through Round)
//   dy/ds = round(x/s) − x/s inside, qmin − z / qmax − z outside (LSQ)
//
// Written with plain ops (Div, Round, Clip, Mul), sdk/autodiff derives exactly these gradients but
// through the rules of each op: about ten activation-sized tensors per quantizer and step (the
// Clip masks, s·dy, dy/s, the two step terms). Here the forward op also outputs the mask `inside`,
// and the rule needs one Where for dx and two dot products for ds:
//   dy/ds = y/s − (x/s)·inside  in both cases (inside y/s = round(x/s); outside y/s = qmin/qmax − z),
//   so  dL/ds = Σ g·dy/ds = (g·y − dx·x)/s  with dx = g·inside, the input gradient.
// Each dot is a Gemm of two [1, n] rows, which only reads its inputs; the elementwise form (a step
// factor tensor in the forward op, Mul, ReduceSum) wrote three activation-sized tensors and took
// 0.23-0.25 ms per quantizer in a layer2.0 step at batch 16, against 0.06-0.07 ms for the two
// Gemms (onnxruntime's profiler on the step graph). The difference of the two sums loses about
// log10(levels) digits of float32 precision: at 8 bits, by that estimate (not measured), a
// relative error near 1e-4 in the step's gradient.
// onnxruntime runs the op as a model-local function (FunctionProto), inlined at session creation.
//
// ReluLsqFakeQuant is the same quantizer applied to Relu(x) for an unsigned range (qmin = 0, zero
// point 0), read from the Relu's input x: clipping at qmin already zeroes every x < 0, so y is the
// same (up to the sign of zero: x in (-s/2, 0) gives -0), and `inside` adds x > 0, what the Relu's
// own backward (dy · [y > 0]) would multiply by. Both gradients of the rule above are then those
// of the two ops in a row: for x <= 0, dx = 0 and the step term g·y − dx·x is 0, as with the
// Relu's output 0. It saves the Relu's forward pass and its backward mask and product: three to
// four activation-sized passes per quantized Relu.
import { create, toBinary } from '@bufbuild/protobuf';
import { FunctionProtoSchema, NodeProtoSchema, OperatorSetIdProtoSchema } from 'onnx-buf';
import { registerRule } from '../autodiff/index.ts';
import { A } from '../onnx/builder.ts';

export const LSQ_DOMAIN = 'ttaq.recon';
/** Inputs (x, s, qmin, qmax), zero point 0. Outputs (y, inside). */
export const LSQ_OP = 'LsqFakeQuant';
/** Inputs (x, s, z, qmin, qmax), z a float scalar. Outputs (y, inside). */
export const LSQ_OP_Z = 'LsqFakeQuantZ';
/** LSQ_OP of Relu(x): inputs (x, s, qmin, qmax) with qmin = 0 and zero point 0. Outputs (y, inside). */
export const LSQ_OP_RELU = 'ReluLsqFakeQuant';

const node = (opType: string, input: string[], output: string[]) => create(NodeProtoSchema, { opType, domain: '', input, output });

/** The encoded FunctionProtos of the three ops (Model.functions), body at default-domain `opset`. */
export function lsqFunctions(opset: number): Uint8Array[] {
  const imports = [create(OperatorSetIdProtoSchema, { domain: '', version: BigInt(opset) })];
  const fn = (name: string, input: string[], body: ReturnType<typeof node>[]) =>
    toBinary(FunctionProtoSchema, create(FunctionProtoSchema, { name, domain: LSQ_DOMAIN, input, output: ['y', 'inside'], node: body, opsetImport: imports }));
  // y = s·clip(round(x/s), lo, hi); `kept` where clipping left the code as it was
  const zeroPointFree = (kept: string) => [
    node('Div', ['x', 's'], ['u']),
    node('Round', ['u'], ['q']),
    node('Clip', ['q', 'lo', 'hi'], ['c']),
    node('Mul', ['c', 's'], ['y']),
    node('Equal', ['c', 'q'], [kept]),
  ];
  return [
    fn(LSQ_OP, ['x', 's', 'lo', 'hi'], zeroPointFree('inside')),
    fn(LSQ_OP_Z, ['x', 's', 'z', 'lo', 'hi'], [
      node('Div', ['x', 's'], ['u']),
      node('Round', ['u'], ['q']),
      node('Add', ['q', 'z'], ['r']),
      node('Clip', ['r', 'lo', 'hi'], ['c']),
      node('Sub', ['c', 'z'], ['cz']),
      node('Mul', ['cz', 's'], ['y']),
      node('Equal', ['c', 'r'], ['inside']),
    ]),
    fn(LSQ_OP_RELU, ['x', 's', 'lo', 'hi'], [
      ...zeroPointFree('kept'),
      // lo is 0 here: x > 0 is where the Relu passes its gradient
      node('Greater', ['x', 'lo'], ['positive']),
      node('And', ['kept', 'positive'], ['inside']),
    ]),
  ];
}

for (const opType of [LSQ_OP, LSQ_OP_Z, LSQ_OP_RELU]) {
  registerRule({
    opType,
    domain: LSQ_DOMAIN,
    nonDiffInputs: opType === LSQ_OP_Z ? [2, 3, 4] : [2, 3],
    backward(c) {
      const [x, s] = c.node.inputs as [string, string];
      const [y, inside] = c.node.outputs as [string, string];
      const g = c.gy[0];
      if (!g || !(c.needs[0] || c.needs[1])) return c.node.inputs.map(() => null);
      const { b } = c;
      const dx = b.op1('Where', [inside, g, c.scalar(0, x)]);
      let ds: string | null = null;
      if (c.needs[1]) {
        const row = c.ints([1, -1]);
        const dot = (p: string, q: string): string => b.op1('Gemm', [b.op1('Reshape', [p, row]), b.op1('Reshape', [q, row])], { transB: A.int(1) });
        const sum = b.op1('Div', [b.op1('Sub', [dot(g, y), dot(dx, x)]), s]); // [1, 1]
        ds = b.op1('Reshape', [sum, c.ints(c.shape(s))]);
      }
      return [c.needs[0] ? c.unbroadcast(dx, x) : null, ds, ...c.node.inputs.slice(2).map(() => null)];
    },
  });
}
