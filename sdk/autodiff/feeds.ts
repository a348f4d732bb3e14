// Batch inputs of gradient steps beyond plain tensors, and the per-thread buffers that turn them
// into what onnxruntime-node takes.
import { TtaqError } from '../errors/index.ts';
import type { Tensor } from '../onnx/types.ts';

/**
 * A batch input given as rows of a table: rows `rows` (in that order) of `rowsOf`, a flattened
 * [N, ...rowDims] array. Why: a data-parallel step hands each slice only its part of `rows`, and
 * the slice gathers them on its own thread, in parallel, straight from shared memory, instead of
 * this thread gathering the whole batch and every slice copying its part again.
 */
export interface RowFeed {
  readonly rowsOf: Float32Array;
  readonly rowDims: readonly number[];
  readonly rows: Int32Array;
}

export type BatchFeed = Tensor | RowFeed;

export const isRowFeed = (f: BatchFeed): f is RowFeed => 'rowsOf' in f;

/** The shape a row feed stands for. */
export const rowFeedDims = (f: RowFeed): number[] => [f.rows.length, ...f.rowDims];

/**
 * One buffer per input name, reused from step to step, for the two things that need a copy:
 * gathering a row feed, and a view of shared memory (onnxruntime-node refuses those: "Invalid
 * argument"). A fresh copy each step fed the garbage collector ~2 MB a reconstruction step. A fed
 * tensor is valid until the next `feed` of the same name. Other tensors pass as they are.
 */
export class FeedBuffers {
  private readonly bufs = new Map<string, Tensor['data']>();

  feed(name: string, f: BatchFeed): Tensor {
    if (isRowFeed(f)) return this.gather(name, f);
    if (!(f.data.buffer instanceof SharedArrayBuffer)) return f;
    const b = this.buffer(name, f.data.constructor as new (n: number) => Tensor['data'], f.data.length);
    (b as Float32Array).set(f.data as Float32Array);
    return { dtype: f.dtype, dims: f.dims, data: b } as Tensor;
  }

  private gather(name: string, f: RowFeed): Tensor {
    const per = f.rowDims.reduce((a, b) => a * b, 1);
    const n = f.rowsOf.length / per;
    const out = this.buffer(name, Float32Array, f.rows.length * per) as Float32Array;
    for (let i = 0; i < f.rows.length; i++) {
      const r = f.rows[i]!;
      if (!(r >= 0 && r < n)) throw new TtaqError('AUTODIFF_BAD_REQUEST', `row feed '${name}': row ${r} is outside the table's ${n} rows`);
      out.set(f.rowsOf.subarray(r * per, (r + 1) * per), i * per);
    }
    return { dtype: 'float32', dims: rowFeedDims(f), data: out };
  }

  private buffer(name: string, ctor: new (n: number) => Tensor['data'], length: number): Tensor['data'] {
    let b = this.bufs.get(name);
    if (!b || b.length !== length || b.constructor !== ctor) {
      b = new ctor(length);
      this.bufs.set(name, b);
    }
    return b;
  }
}
