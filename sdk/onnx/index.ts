// Public surface of sdk/onnx: the graph IR, the ONNX codec, packing of sub-byte integers, model
// files, opset/IR-version helpers, graph analysis and edits, validation, and the values that hold
// sub-byte integers. Nothing here runs a model: shape inference by a run is sdk/runtime's.
export type * from './types.ts';
export * from './tensor.ts';
export { A, GraphBuilder, type OpOptions } from './builder.ts';
export { decodeModel, encodeModel, decodeTensor, encodeTensor, tensorRawBytes, dtypeFromOnnx, ONNX_DTYPE } from './codec.ts';
export { isSubByte, packSubByte, packedByteLength, subByteBits, unpackSubByte, type SubByteDType } from './packing.ts';
export { loadModel, readModelBytes, saveModel } from './io.ts';
export { checkModelVersions, getDomainOpset, getOpset, setOpset, MAX_IR_VERSION, MAX_OPSET, MIN_IR_VERSION, MIN_OPSET } from './versions.ts';
export type { EncodeOptions } from './codec.ts';
export { ancestorNodes, consumers, declaredDtype, declaredInfo, descendantNodes, indexGraph, isTopologicallySorted, opHistogram, producers, topoOrder, topoSort, valueNames, type GraphIndex } from './graph.ts';
export { bypassNode, constantValue, exposeOutputs, foldConstants, insertNode, insertNodes, removeNode, removeNodes, nameAllocator, removeUnused, renameValue, replaceNode, replaceUses, setInitializer, setValueInfo, uniqueName, type InsertAt } from './edit.ts';
export { extractModel, extractSubgraph, type ExtractOptions } from './extract.ts';
export { assertValidGraph, validateGraph, validateModel, type Problem, type ProblemKind } from './validate.ts';
export { subByteValues } from './subbyte-values.ts';
