// A small mutable builder for constructing graphs in code (models, gradient graphs, quantizer
// wrappers). It owns name uniqueness so callers never collide with existing values.
import { f32, i64 } from './tensor.ts';
import type { Attribute, DType, Dim, Graph, Node, Tensor, ValueInfo } from './types.ts';

/** Attribute constructors: ONNX distinguishes int from float, JavaScript numbers do not. */
export const A = {
  int: (value: number): Attribute => ({ kind: 'int', value }),
  float: (value: number): Attribute => ({ kind: 'float', value }),
  str: (value: string): Attribute => ({ kind: 'string', value }),
  ints: (value: readonly number[]): Attribute => ({ kind: 'ints', value: [...value] }),
  floats: (value: readonly number[]): Attribute => ({ kind: 'floats', value: [...value] }),
  strings: (value: readonly string[]): Attribute => ({ kind: 'strings', value: [...value] }),
  tensor: (value: Tensor): Attribute => ({ kind: 'tensor', value }),
} as const;

export interface OpOptions {
  /** Number of outputs (default 1). */
  readonly outputs?: number;
  /** Explicit output names (overrides `outputs`). */
  readonly outputNames?: readonly string[];
  readonly name?: string;
  readonly domain?: string;
}

export class GraphBuilder {
  readonly nodes: Node[] = [];
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  readonly initializers = new Map<string, Tensor>();
  readonly valueInfo = new Map<string, ValueInfo>();
  private readonly taken = new Set<string>();
  private readonly constCache = new Map<string, string>();
  private counter = 0;

  constructor(
    readonly name = 'graph',
    /** Prefix for generated names, so graphs merged later do not collide. */
    private readonly prefix = '',
    taken: Iterable<string> = [],
  ) {
    for (const n of taken) this.taken.add(n);
  }

  /** Starts from an existing graph: its nodes, inputs, outputs and initializers are kept. */
  static from(g: Graph, prefix = ''): GraphBuilder {
    const b = new GraphBuilder(g.name, prefix);
    for (const n of g.nodes) { b.nodes.push(n); n.outputs.forEach((o) => b.taken.add(o)); b.taken.add(n.name); }
    for (const v of g.inputs) { b.inputs.push(v); b.taken.add(v.name); }
    for (const v of g.outputs) b.outputs.push(v);
    for (const [k, t] of g.initializers) { b.initializers.set(k, t); b.taken.add(k); }
    for (const [k, v] of g.valueInfo) b.valueInfo.set(k, v);
    return b;
  }

  /** Marks names as used (e.g. values of another graph this one will be merged with). */
  reserve(names: Iterable<string>): void {
    for (const n of names) this.taken.add(n);
  }

  /** A new unique name built from `hint`. */
  fresh(hint: string): string {
    let name = `${this.prefix}${hint}`;
    while (this.taken.has(name)) name = `${this.prefix}${hint}_${++this.counter}`;
    this.taken.add(name);
    return name;
  }

  input(name: string, dtype: DType, shape: readonly Dim[]): string {
    this.taken.add(name);
    this.inputs.push({ name, dtype, shape: [...shape] });
    return name;
  }

  output(name: string, dtype: DType = 'float32', shape?: readonly Dim[]): void {
    this.outputs.push(shape ? { name, dtype, shape: [...shape] } : { name, dtype });
  }

  /** Adds an initializer under an exact name. */
  initializer(name: string, t: Tensor): string {
    this.taken.add(name);
    this.initializers.set(name, t);
    return name;
  }

  /** Adds an initializer under a fresh name derived from `hint`. */
  constant(t: Tensor, hint = 'const'): string {
    return this.initializer(this.fresh(hint), t);
  }

  /** A float32 scalar constant, shared between uses of the same value. */
  scalar(value: number, dtype: 'float32' | 'int64' = 'float32'): string {
    const key = `${dtype}:${value}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.constant(dtype === 'float32' ? f32([], [value]) : i64([], [value]), 'scalar');
    this.constCache.set(key, name);
    return name;
  }

  /** A 1-D int64 constant (shapes, axes, pads), shared between identical uses. */
  ints(values: readonly number[]): string {
    const key = `ints:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.constant(i64([values.length], values), 'ints');
    this.constCache.set(key, name);
    return name;
  }

  /** Appends a node; returns its output names. */
  op(opType: string, inputs: readonly string[], attrs: Record<string, Attribute> = {}, opts: OpOptions = {}): string[] {
    const outs = opts.outputNames
      ? opts.outputNames.map((n) => { this.taken.add(n); return n; })
      : Array.from({ length: opts.outputs ?? 1 }, (_, i) => this.fresh(`${opType}${i ? `_o${i}` : ''}`));
    this.nodes.push({
      name: opts.name ? this.fresh(opts.name) : this.fresh(`${opType}_node`),
      opType,
      domain: opts.domain ?? '',
      inputs: [...inputs],
      outputs: outs,
      attrs,
    });
    return outs;
  }

  /** Appends a single-output node; returns its output name. */
  op1(opType: string, inputs: readonly string[], attrs: Record<string, Attribute> = {}, opts: OpOptions = {}): string {
    return this.op(opType, inputs, attrs, opts)[0]!;
  }

  build(): Graph {
    return {
      name: this.name,
      nodes: [...this.nodes],
      inputs: [...this.inputs],
      outputs: [...this.outputs],
      initializers: new Map(this.initializers),
      valueInfo: new Map(this.valueInfo),
    };
  }
}
