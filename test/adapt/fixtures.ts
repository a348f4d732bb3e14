// Fixtures shared by the adapter tests: the one-BN model whose logits are the BN output itself,
// and an element-wise comparison.
import assert from 'node:assert/strict';
import { A, GraphBuilder } from '../../sdk/onnx/builder.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import type { Model } from '../../sdk/onnx/types.ts';
import { EPS } from './helpers.ts';

export interface BnParams {
  readonly scale: readonly number[];
  readonly bias: readonly number[];
  readonly mean: readonly number[];
  readonly var: readonly number[];
}

/** The BN-only model's source parameters and running statistics (2 channels). */
export const BN_ONLY: BnParams = { scale: [1.3, 0.7], bias: [0.2, -0.4], mean: [0.5, -1], var: [2, 0.5] };

/** x [N, 2, 2, 2] -> BN 'bn' -> Flatten: 8 logits (= 8 classes), the BN output itself. */
export function bnOnly(p: BnParams = BN_ONLY): Model {
  const b = new GraphBuilder('bn-only');
  const x = b.input('x', 'float32', ['N', 2, 2, 2]);
  const init = (name: string, v: readonly number[]) => b.initializer(name, f32([2], v));
  const y = b.op1('BatchNormalization', [x, init('s', p.scale), init('b', p.bias), init('m', p.mean), init('v', p.var)], { epsilon: A.float(EPS) }, { name: 'bn' });
  b.op('Flatten', [y], { axis: A.int(1) }, { outputNames: ['logits'] });
  b.output('logits', 'float32', ['N', 8]);
  return { irVersion: 8, opsetImports: [{ domain: '', version: 17 }], producerName: 't', producerVersion: '0', metadata: {}, graph: b.build() };
}

/** The largest absolute element-wise difference (asserts equal lengths). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(Number(a[i]) - Number(b[i])));
  return m;
}
