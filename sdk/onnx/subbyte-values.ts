// Which values of a graph hold sub-byte integers (int2/uint2/int4/uint4), found statically from
// the graph alone: onnxruntime-node cannot hand such values over, so passes that run a model and
// read its values (shape inference, sdk/runtime/shapes.ts) must know them beforehand.
import { dtypeFromOnnx } from './codec.ts';
import { isSubByte, type SubByteDType } from './packing.ts';
import type { Graph, Node } from './types.ts';

/** Ops whose output has the dtype of their first input (used to track sub-byte values statically). */
const SAME_DTYPE_OPS = new Set([
  'Identity', 'Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'Flatten', 'Slice', 'Gather', 'GatherElements',
  'GatherND', 'Concat', 'Split', 'Expand', 'Tile', 'Pad', 'DepthToSpace', 'SpaceToDepth', 'Compress', 'ReverseSequence',
]);

/**
 * Values of sub-byte dtype, found statically (onnxruntime-node cannot hand them over, so the
 * probe exposes them through a Cast to int8/uint8): sub-byte inputs and initializers, Constants,
 * QuantizeLinear with a sub-byte zero point or output_dtype, Cast/CastLike to a sub-byte type, and
 * data-movement ops applied to any of these.
 */
export function subByteValues(g: Graph): Map<string, SubByteDType> {
  const sub = new Map<string, SubByteDType>();
  for (const v of g.inputs) if (isSubByte(v.dtype)) sub.set(v.name, v.dtype);
  for (const [k, t] of g.initializers) if (isSubByte(t.dtype)) sub.set(k, t.dtype);
  const fromCode = (code: number | undefined): SubByteDType | undefined => {
    const d = code === undefined ? undefined : dtypeFromOnnx(code);
    return d && isSubByte(d) ? d : undefined;
  };
  const intAttr = (n: Node, k: string): number | undefined => {
    const a = n.attrs[k];
    return a?.kind === 'int' ? a.value : undefined;
  };
  for (const n of g.nodes) {
    let d: SubByteDType | undefined;
    if (n.domain !== '') continue;
    switch (n.opType) {
      case 'Constant': {
        const a = n.attrs.value;
        if (a?.kind === 'tensor' && isSubByte(a.value.dtype)) d = a.value.dtype;
        break;
      }
      case 'QuantizeLinear':
        d = (n.inputs[2] ? sub.get(n.inputs[2]) : undefined) ?? fromCode(intAttr(n, 'output_dtype'));
        break;
      case 'Cast':
        d = fromCode(intAttr(n, 'to'));
        break;
      case 'CastLike':
        d = n.inputs[1] ? sub.get(n.inputs[1]) : undefined;
        break;
      default:
        if (SAME_DTYPE_OPS.has(n.opType)) d = n.inputs.map((v) => sub.get(v)).find((x) => x !== undefined);
    }
    if (d) for (const o of n.outputs) if (o !== '') sub.set(o, d);
  }
  return sub;
}
