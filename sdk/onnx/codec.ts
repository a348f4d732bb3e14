// ONNX bytes <-> IR. Decoding accepts every in-file TensorProto layout (raw_data and the typed
// fields) and rejects what the IR cannot hold with an error that names the tensor and the way out.
// Encoding always writes raw_data (little-endian, sub-byte types packed), the most compact and the
// fastest layout for onnxruntime to read.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import {
  AttributeProtoSchema,
  AttributeProto_AttributeType as AT,
  FunctionProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  TensorProtoSchema,
  TensorProto_DataLocation,
  TensorShapeProtoSchema,
  TensorShapeProto_DimensionSchema,
  TypeProtoSchema,
  TypeProto_TensorSchema,
  ValueInfoProtoSchema,
  type AttributeProto,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from 'onnx-buf';
import { err, ok, TtaqError, type Result } from '../errors/index.ts';
import { isSubByte, packSubByte, unpackSubByte } from './packing.ts';
import { numel } from './tensor.ts';
import type { ArrayFor, Attribute, Dim, DType, Graph, Model, Node, Tensor, ValueInfo } from './types.ts';
import { checkModelVersions } from './versions.ts';

// ---------------------------------------------------------------------------------------------
// Data types

/** ONNX TensorProto.DataType numbers of the dtypes the IR holds. */
export const ONNX_DTYPE: Readonly<Record<DType, number>> = {
  float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7, bool: 9, float16: 10,
  float64: 11, uint32: 12, uint64: 13, uint4: 21, int4: 22, uint2: 25, int2: 26,
};

const DTYPE_OF = new Map<number, DType>(Object.entries(ONNX_DTYPE).map(([k, v]) => [v, k as DType]));

const ONNX_TYPE_NAMES: Record<number, string> = {
  0: 'UNDEFINED', 8: 'STRING', 14: 'COMPLEX64', 15: 'COMPLEX128', 16: 'BFLOAT16', 17: 'FLOAT8E4M3FN',
  18: 'FLOAT8E4M3FNUZ', 19: 'FLOAT8E5M2', 20: 'FLOAT8E5M2FNUZ', 23: 'FLOAT4E2M1', 24: 'FLOAT8E8M0',
};

/** The IR dtype of an ONNX data type number, or undefined when the IR cannot hold it. */
export const dtypeFromOnnx = (t: number): DType | undefined => DTYPE_OF.get(t);

const onnxTypeName = (t: number): string => ONNX_TYPE_NAMES[t] ?? `data type ${t}`;

function requireDtype(t: number, where: string): DType {
  const d = DTYPE_OF.get(t);
  if (d) return d;
  throw new TtaqError(
    'ONNX_UNSUPPORTED_DTYPE',
    `${where} has type ${onnxTypeName(t)}, which ttaq does not handle; supported: ${Object.keys(ONNX_DTYPE).join(', ')}. Cast it (e.g. to float32) before export`,
    { onnxType: t },
  );
}

/** Bytes per element in raw_data for whole-byte types. */
const ELEM_BYTES: Partial<Record<DType, number>> = {
  float32: 4, float64: 8, float16: 2, int8: 1, uint8: 1, int16: 2, uint16: 2, int32: 4, uint32: 4,
  int64: 8, uint64: 8, bool: 1,
};

const ARRAY_CTOR = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, int8: Int8Array, uint8: Uint8Array,
  int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array,
  uint64: BigUint64Array, bool: Uint8Array,
} as const;

// ---------------------------------------------------------------------------------------------
// Tensors

function tensorFromProto(tp: TensorProto, where: string): Tensor {
  const name = tp.name ? `${where} '${tp.name}'` : where;
  if (tp.dataLocation === TensorProto_DataLocation.EXTERNAL || tp.externalData.length > 0) {
    const loc = tp.externalData.find((e) => e.key === 'location')?.value ?? '?';
    throw new TtaqError(
      'ONNX_EXTERNAL_DATA',
      `${name} keeps its data in an external file ('${loc}'); ttaq reads self-contained models only. ` +
        `Re-save it with the data inline, e.g. in Python: m = onnx.load(path); onnx.save_model(m, out, save_as_external_data=False)`,
      { tensor: tp.name, location: loc },
    );
  }
  if (tp.segment) {
    throw new TtaqError('ONNX_UNSUPPORTED_DTYPE', `${name} is a segment of a larger tensor; segmented tensors are not supported. Re-save the model with whole tensors`, { tensor: tp.name });
  }
  const dtype = requireDtype(tp.dataType, name);
  const dims = tp.dims.map((d) => {
    const n = Number(d);
    if (!Number.isSafeInteger(n) || n < 0) throw new TtaqError('ONNX_INVALID_GRAPH', `${name} has invalid dimension ${d}`, { tensor: tp.name });
    return n;
  });
  const n = numel(dims);
  const bad = (what: string): TtaqError =>
    new TtaqError('ONNX_INVALID_GRAPH', `${name} (${dtype}, shape [${dims.join(', ')}] = ${n} elements): ${what}; the file is corrupt or was written by a broken exporter`, { tensor: tp.name });

  if (tp.rawData.length > 0 || n === 0) {
    const raw = tp.rawData;
    if (isSubByte(dtype)) return { dtype, dims, data: unpackSubByte(dtype, raw, n, name) } as Tensor;
    const size = ELEM_BYTES[dtype]!;
    if (raw.length !== n * size) throw bad(`raw_data holds ${raw.length} bytes, expected ${n * size}`);
    // Copy into a fresh, aligned buffer (the message's bytes may start at any offset). Not
    // raw.slice(): when the caller passed a Node Buffer, raw is a Buffer too, and Buffer#slice is
    // a view of the whole (pooled) allocation, not a copy.
    const buf = new Uint8Array(raw).buffer;
    const data = new ARRAY_CTOR[dtype as keyof typeof ARRAY_CTOR](buf);
    if (dtype === 'bool') for (let i = 0; i < n; i++) data[i] = data[i] ? 1 : 0;
    return { dtype, dims, data } as Tensor;
  }

  const expectLen = (len: number, field: string, need = n): void => {
    if (len !== need) throw bad(`${field} holds ${len} values, expected ${need}`);
  };
  switch (dtype) {
    case 'float32':
      expectLen(tp.floatData.length, 'float_data');
      return { dtype, dims, data: Float32Array.from(tp.floatData) };
    case 'float64':
      expectLen(tp.doubleData.length, 'double_data');
      return { dtype, dims, data: Float64Array.from(tp.doubleData) };
    case 'int64':
      expectLen(tp.int64Data.length, 'int64_data');
      return { dtype, dims, data: BigInt64Array.from(tp.int64Data) };
    case 'uint64':
      expectLen(tp.uint64Data.length, 'uint64_data');
      return { dtype, dims, data: BigUint64Array.from(tp.uint64Data, (v) => BigInt.asUintN(64, v)) };
    case 'uint32':
      expectLen(tp.uint64Data.length, 'uint64_data');
      return { dtype, dims, data: Uint32Array.from(tp.uint64Data, (v) => Number(v)) };
    case 'int4': case 'uint4': case 'int2': case 'uint2': {
      // Each int32_data entry carries one packed byte (two 4-bit or four 2-bit elements).
      const packed = Uint8Array.from(tp.int32Data, (v) => v & 0xff);
      return { dtype, dims, data: unpackSubByte(dtype, packed, n, name) } as Tensor;
    }
    case 'bool':
      expectLen(tp.int32Data.length, 'int32_data');
      return { dtype, dims, data: Uint8Array.from(tp.int32Data, (v) => (v ? 1 : 0)) };
    default: {
      // int32, int16, int8, uint16, uint8, float16 (bits): one element per int32_data entry.
      expectLen(tp.int32Data.length, 'int32_data');
      const data = new ARRAY_CTOR[dtype](n);
      data.set(tp.int32Data);
      return { dtype, dims, data } as Tensor;
    }
  }
}

/** The little-endian bytes of a tensor as ONNX raw_data (sub-byte types packed). */
export function tensorRawBytes(t: Tensor, where = 'tensor'): Uint8Array {
  if (isSubByte(t.dtype)) return packSubByte(t.dtype, t.data as ArrayFor['int4'], where);
  const d = t.data as ArrayFor['float32'];
  return new Uint8Array(d.buffer as ArrayBuffer, d.byteOffset, d.byteLength);
}

function tensorToProto(t: Tensor, name: string): TensorProto {
  const n = numel(t.dims);
  if (t.data.length !== n) {
    throw new TtaqError('ONNX_INVALID_GRAPH', `tensor '${name}' of shape [${t.dims.join(', ')}] needs ${n} elements, holds ${t.data.length}`, { tensor: name });
  }
  const raw = tensorRawBytes(t, `tensor '${name}'`);
  return create(TensorProtoSchema, {
    name,
    dims: t.dims.map((d) => BigInt(d)),
    dataType: ONNX_DTYPE[t.dtype],
    // A view of the tensor's memory: the message lives only until toBinary has copied it out.
    rawData: raw as Uint8Array<ArrayBuffer>,
  });
}

// ---------------------------------------------------------------------------------------------
// Value infos

function valueInfoFromProto(vi: ValueInfoProto, where: string, strict: boolean): ValueInfo | undefined {
  const tt = vi.type?.value;
  if (tt?.case !== 'tensorType') {
    if (!strict) return undefined;
    throw new TtaqError('ONNX_UNSUPPORTED_DTYPE', `${where} '${vi.name}' is a ${tt?.case ?? 'value of unknown type'}, not a tensor; ttaq handles tensor inputs and outputs only`, { value: vi.name });
  }
  const dtype = strict ? requireDtype(tt.value.elemType, `${where} '${vi.name}'`) : dtypeFromOnnx(tt.value.elemType);
  if (!dtype) return undefined;
  const shape = tt.value.shape?.dim.map((d): Dim =>
    d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : null);
  return shape ? { name: vi.name, dtype, shape } : { name: vi.name, dtype };
}

function valueInfoToProto(v: ValueInfo): ValueInfoProto {
  const tensorType = create(TypeProto_TensorSchema, { elemType: ONNX_DTYPE[v.dtype] });
  if (v.shape) {
    tensorType.shape = create(TensorShapeProtoSchema, {
      dim: v.shape.map((d) =>
        create(TensorShapeProto_DimensionSchema, {
          value: typeof d === 'number' ? { case: 'dimValue', value: BigInt(d) } : typeof d === 'string' ? { case: 'dimParam', value: d } : { case: undefined },
        })),
    });
  }
  return create(ValueInfoProtoSchema, {
    name: v.name,
    type: create(TypeProtoSchema, { value: { case: 'tensorType', value: tensorType } }),
  });
}

// ---------------------------------------------------------------------------------------------
// Attributes

const utf8 = new TextDecoder('utf-8');
const utf8enc = new TextEncoder();

/** Attribute type of an AttributeProto, inferred from its set field when `type` is missing (old files). */
function attrType(a: AttributeProto): AT {
  if (a.type !== AT.UNDEFINED) return a.type;
  if (a.floats.length) return AT.FLOATS;
  if (a.ints.length) return AT.INTS;
  if (a.strings.length) return AT.STRINGS;
  if (a.tensors.length) return AT.TENSORS;
  if (a.graphs.length) return AT.GRAPHS;
  if (a.t) return AT.TENSOR;
  if (a.g) return AT.GRAPH;
  if (a.s.length) return AT.STRING;
  if (a.f !== 0) return AT.FLOAT;
  return AT.INT;
}

function attributeFromProto(a: AttributeProto, where: string): Attribute {
  if (a.refAttrName) return { kind: 'opaque', value: toBinary(AttributeProtoSchema, a) };
  switch (attrType(a)) {
    case AT.FLOAT: return { kind: 'float', value: a.f };
    case AT.INT: return { kind: 'int', value: Number(a.i) };
    case AT.STRING: return { kind: 'string', value: utf8.decode(a.s) };
    case AT.TENSOR: return { kind: 'tensor', value: tensorFromProto(a.t!, `${where} attribute '${a.name}'`) };
    case AT.FLOATS: return { kind: 'floats', value: [...a.floats] };
    case AT.INTS: return { kind: 'ints', value: a.ints.map(Number) };
    case AT.STRINGS: return { kind: 'strings', value: a.strings.map((s) => utf8.decode(s)) };
    default: return { kind: 'opaque', value: toBinary(AttributeProtoSchema, a) };
  }
}

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

/** int attributes are JS numbers; values past int64 (INT64_MAX read back as 2^63) are clamped. */
function toInt64(v: number, where: string): bigint {
  if (!Number.isFinite(v) || !Number.isInteger(v)) {
    throw new TtaqError('ONNX_INVALID_GRAPH', `${where}: int attribute value ${v} is not an integer; use A.float for real values`, { value: v });
  }
  const b = BigInt(v);
  return b > INT64_MAX ? INT64_MAX : b < INT64_MIN ? INT64_MIN : b;
}

function attributeToProto(name: string, a: Attribute, where: string): AttributeProto {
  const w = `${where} attribute '${name}'`;
  switch (a.kind) {
    case 'float': return create(AttributeProtoSchema, { name, type: AT.FLOAT, f: a.value });
    case 'int': return create(AttributeProtoSchema, { name, type: AT.INT, i: toInt64(a.value, w) });
    case 'string': return create(AttributeProtoSchema, { name, type: AT.STRING, s: utf8enc.encode(a.value) });
    case 'tensor': return create(AttributeProtoSchema, { name, type: AT.TENSOR, t: tensorToProto(a.value, '') });
    case 'floats': return create(AttributeProtoSchema, { name, type: AT.FLOATS, floats: [...a.value] });
    case 'ints': return create(AttributeProtoSchema, { name, type: AT.INTS, ints: a.value.map((v) => toInt64(v, w)) });
    case 'strings': return create(AttributeProtoSchema, { name, type: AT.STRINGS, strings: a.value.map((s) => utf8enc.encode(s)) });
    case 'opaque': {
      const p = fromBinary(AttributeProtoSchema, a.value);
      p.name = name;
      return p;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Graph and model

function nodeFromProto(np: NodeProto, name: string): Node {
  const where = `node '${name}' (${np.opType})`;
  const attrs: Record<string, Attribute> = {};
  for (const a of np.attribute) attrs[a.name] = attributeFromProto(a, where);
  return { name, opType: np.opType, domain: np.domain === 'ai.onnx' ? '' : np.domain, inputs: [...np.input], outputs: [...np.output], attrs };
}

function nodeToProto(n: Node): NodeProto {
  const where = `node '${n.name}' (${n.opType})`;
  return create(NodeProtoSchema, {
    name: n.name,
    opType: n.opType,
    domain: n.domain,
    input: [...n.inputs],
    output: [...n.outputs],
    attribute: Object.entries(n.attrs).map(([k, a]) => attributeToProto(k, a, where)),
  });
}

function graphFromProto(gp: GraphProto): Graph {
  if (gp.sparseInitializer.length > 0) {
    throw new TtaqError(
      'ONNX_UNSUPPORTED_DTYPE',
      `graph '${gp.name}' has ${gp.sparseInitializer.length} sparse initializer(s) (first: '${gp.sparseInitializer[0]!.values?.name ?? '?'}'); ttaq needs dense initializers. Densify them before export`,
    );
  }
  const initializers = new Map<string, Tensor>();
  for (const tp of gp.initializer) initializers.set(tp.name, tensorFromProto(tp, 'initializer'));
  // IR < 4 lists initializers among the inputs too; the IR keeps inputs that are fed only.
  const inputs = gp.input.filter((vi) => !initializers.has(vi.name)).map((vi) => valueInfoFromProto(vi, 'graph input', true)!);
  const outputs = gp.output.map((vi) => valueInfoFromProto(vi, 'graph output', true)!);
  const valueInfo = new Map<string, ValueInfo>();
  for (const vi of gp.valueInfo) {
    const v = valueInfoFromProto(vi, 'value_info', false);
    if (v) valueInfo.set(v.name, v);
  }
  // Edits address nodes by name: unnamed nodes get one no other node uses.
  const used = new Set(gp.node.map((n) => n.name));
  const nodes = gp.node.map((np, i) => {
    if (np.name) return nodeFromProto(np, np.name);
    let name = `${np.opType}_${i}`;
    for (let k = 1; used.has(name); k++) name = `${np.opType}_${i}_${k}`;
    used.add(name);
    return nodeFromProto(np, name);
  });
  return { name: gp.name, nodes, inputs, outputs, initializers, valueInfo };
}

function graphToProto(g: Graph, untyped: ReadonlySet<string>): GraphProto {
  return create(GraphProtoSchema, {
    name: g.name,
    node: g.nodes.map(nodeToProto),
    input: g.inputs.map(valueInfoToProto),
    output: g.outputs.map((v) => (untyped.has(v.name) ? create(ValueInfoProtoSchema, { name: v.name }) : valueInfoToProto(v))),
    initializer: [...g.initializers].map(([k, t]) => tensorToProto(t, k)),
    valueInfo: [...g.valueInfo.values()].map(valueInfoToProto),
  });
}

/** ModelProto field number -> wire type, used to tell a truncated model from bytes that are not one. */
const MODEL_FIELDS: ReadonlyMap<number, WireType> = new Map([
  [1, WireType.Varint], [2, WireType.LengthDelimited], [3, WireType.LengthDelimited], [4, WireType.LengthDelimited],
  [5, WireType.Varint], [6, WireType.LengthDelimited], [7, WireType.LengthDelimited], [8, WireType.LengthDelimited],
  [14, WireType.LengthDelimited], [20, WireType.LengthDelimited], [25, WireType.LengthDelimited], [26, WireType.LengthDelimited],
]);

/**
 * Walks the top-level fields: true when every field seen is a ModelProto field with the right wire
 * type and the bytes simply stop early (a truncated model), false for anything else (not a model).
 */
function looksTruncated(bytes: Uint8Array): boolean {
  const r = new BinaryReader(bytes);
  let fields = 0;
  try {
    while (r.pos < r.len) {
      const [no, wt] = r.tag();
      if (MODEL_FIELDS.get(no) !== wt) return false;
      fields++;
      if (wt === WireType.LengthDelimited) {
        const len = r.uint32();
        if (r.pos + len > r.len) return true;
        r.pos += len;
      } else {
        r.skip(wt);
      }
    }
  } catch (e) {
    return fields > 0 && e instanceof RangeError;
  }
  return false;
}

const notAModel = (source: string, why: string): TtaqError =>
  new TtaqError('ONNX_NOT_A_MODEL', `${source} is not an ONNX model (${why}); pass a .onnx file exported by PyTorch, onnx or ttaq`, { source });

/** Decodes without version checks: the raw structure only. */
function decodeUnchecked(bytes: Uint8Array, source: string): Model {
  let mp: ModelProto;
  try {
    mp = fromBinary(ModelProtoSchema, bytes);
  } catch (e) {
    if (looksTruncated(bytes)) {
      throw new TtaqError('ONNX_TRUNCATED', `${source} is truncated (${bytes.length} bytes; protobuf decoding ran past the end: ${(e as Error).message}); the download or copy was cut short, fetch or export it again`, { source, bytes: bytes.length }, { cause: e });
    }
    throw notAModel(source, `protobuf decoding failed: ${(e as Error).message}`);
  }
  if (!mp.graph) throw notAModel(source, bytes.length === 0 ? 'the file is empty' : 'it has no graph');
  if (mp.irVersion === 0n && mp.opsetImport.length === 0) throw notAModel(source, 'it has neither an IR version nor opset imports');
  const graph = graphFromProto(mp.graph);
  const model: Model = {
    irVersion: Number(mp.irVersion),
    opsetImports: mp.opsetImport.map((o) => ({ domain: o.domain === 'ai.onnx' ? '' : o.domain, version: Number(o.version) })),
    producerName: mp.producerName,
    producerVersion: mp.producerVersion,
    ...(mp.docString ? { docString: mp.docString } : {}),
    metadata: Object.fromEntries(mp.metadataProps.map((p) => [p.key, p.value])),
    graph,
    ...(mp.domain ? { domain: mp.domain } : {}),
    ...(mp.modelVersion ? { modelVersion: Number(mp.modelVersion) } : {}),
    ...(mp.functions.length ? { functions: mp.functions.map((f) => toBinary(FunctionProtoSchema, f)) } : {}),
  };
  return model;
}

/**
 * Decodes ONNX model bytes into the IR and checks that onnxruntime can run its IR version and
 * default-domain opset. `source` (a file name) is used in error messages.
 */
export function decodeModel(bytes: Uint8Array, source = 'model bytes'): Result<Model> {
  try {
    const model = decodeUnchecked(bytes, source);
    checkModelVersions(model, source);
    return ok(model);
  } catch (e) {
    if (e instanceof TtaqError) return err(e);
    return err(new TtaqError('ONNX_NOT_A_MODEL', `${source} could not be decoded: ${(e as Error).message}`, { source }, { cause: e }));
  }
}

export interface EncodeOptions {
  /**
   * Graph outputs written without a type, for onnxruntime to infer (shape inference exposes
   * intermediates whose dtype is not known yet). Their ValueInfo dtype is ignored.
   */
  readonly untypedOutputs?: ReadonlySet<string>;
}

/** Encodes the IR as ONNX model bytes. */
export function encodeModel(model: Model, opts: EncodeOptions = {}): Uint8Array {
  const mp = create(ModelProtoSchema, {
    irVersion: BigInt(model.irVersion),
    opsetImport: model.opsetImports.map((o) => create(OperatorSetIdProtoSchema, { domain: o.domain, version: BigInt(o.version) })),
    producerName: model.producerName,
    producerVersion: model.producerVersion,
    docString: model.docString ?? '',
    metadataProps: Object.entries(model.metadata).map(([key, value]) => create(StringStringEntryProtoSchema, { key, value })),
    graph: graphToProto(model.graph, opts.untypedOutputs ?? new Set()),
    domain: model.domain ?? '',
    modelVersion: BigInt(model.modelVersion ?? 0),
    functions: (model.functions ?? []).map((f) => fromBinary(FunctionProtoSchema, f)),
  });
  return toBinary(ModelProtoSchema, mp);
}

/** Decodes a standalone TensorProto (e.g. a .pb test vector). */
export function decodeTensor(bytes: Uint8Array, where = 'tensor'): Tensor {
  return tensorFromProto(fromBinary(TensorProtoSchema, bytes), where);
}

/** Encodes one tensor as a standalone TensorProto. */
export function encodeTensor(t: Tensor, name = ''): Uint8Array {
  return toBinary(TensorProtoSchema, tensorToProto(t, name));
}
