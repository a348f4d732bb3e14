// The graph IR: plain data, edited by the pure functions of this module. Tensors hold typed
// arrays; sub-byte integer types (int4/uint4/int2/uint2) are held unpacked, one element per byte,
// and are packed only when encoded to ONNX bytes, so every consumer indexes them like int8.

export type DType =
  | 'float32' | 'float64' | 'float16'
  | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64'
  | 'bool'
  | 'int4' | 'uint4' | 'int2' | 'uint2';

/** The typed array that holds each dtype in memory (float16 as raw bits). */
export interface ArrayFor {
  float32: Float32Array;
  float64: Float64Array;
  float16: Uint16Array;
  int8: Int8Array;
  uint8: Uint8Array;
  int16: Int16Array;
  uint16: Uint16Array;
  int32: Int32Array;
  uint32: Uint32Array;
  int64: BigInt64Array;
  uint64: BigUint64Array;
  bool: Uint8Array;
  int4: Int8Array;
  uint4: Uint8Array;
  int2: Int8Array;
  uint2: Uint8Array;
}

/** A tensor whose data array type is tied to its dtype. */
export type Tensor = { [K in DType]: { readonly dtype: K; readonly dims: readonly number[]; readonly data: ArrayFor[K] } }[DType];
export type TensorOf<K extends DType> = { readonly dtype: K; readonly dims: readonly number[]; readonly data: ArrayFor[K] };

/** A dimension: a number when static, a symbolic name or null when dynamic. */
export type Dim = number | string | null;

export interface ValueInfo {
  readonly name: string;
  readonly dtype: DType;
  /** undefined: rank unknown. */
  readonly shape?: readonly Dim[];
}

export type Attribute =
  | { readonly kind: 'float'; readonly value: number }
  | { readonly kind: 'int'; readonly value: number }
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'tensor'; readonly value: Tensor }
  | { readonly kind: 'floats'; readonly value: readonly number[] }
  | { readonly kind: 'ints'; readonly value: readonly number[] }
  | { readonly kind: 'strings'; readonly value: readonly string[] }
  /** Sub-graphs (If/Loop bodies) and other rare kinds are carried as encoded AttributeProto bytes. */
  | { readonly kind: 'opaque'; readonly value: Uint8Array };

export interface Node {
  readonly name: string;
  readonly opType: string;
  /** '' is the default ONNX domain. */
  readonly domain: string;
  /** '' marks an omitted optional input. */
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs: Readonly<Record<string, Attribute>>;
}

export interface Graph {
  readonly name: string;
  /** In a valid graph, topologically ordered. */
  readonly nodes: readonly Node[];
  /** Graph inputs, excluding initializers. */
  readonly inputs: readonly ValueInfo[];
  readonly outputs: readonly ValueInfo[];
  readonly initializers: ReadonlyMap<string, Tensor>;
  /** Known types/shapes of intermediate values. */
  readonly valueInfo: ReadonlyMap<string, ValueInfo>;
}

export interface OpsetImport {
  readonly domain: string;
  readonly version: number;
}

export interface Model {
  readonly irVersion: number;
  readonly opsetImports: readonly OpsetImport[];
  readonly producerName: string;
  readonly producerVersion: string;
  readonly docString?: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly graph: Graph;
  /** ModelProto.domain, when set. */
  readonly domain?: string;
  /** ModelProto.model_version, when set. */
  readonly modelVersion?: number;
  /** Model-local functions, carried as encoded FunctionProto bytes (opaque, like sub-graphs). */
  readonly functions?: readonly Uint8Array[];
}
