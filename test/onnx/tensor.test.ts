// makeTensor checks what the type system cannot see from JavaScript or through a cast: the typed
// array must be the one onnxruntime reads for the dtype, and the shape must fit its length.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { f32, makeTensor } from '../../sdk/onnx/tensor.ts';
import type { ArrayFor } from '../../sdk/onnx/types.ts';

const refused = (re: RegExp) => (e: unknown): boolean => isTtaqError(e) && e.code === 'ONNX_INVALID_GRAPH' && re.test(e.message);

test('makeTensor refuses a typed array of another kind, naming the one the dtype needs', () => {
  assert.throws(() => makeTensor('float32', [2], new Float64Array(2) as unknown as ArrayFor['float32']), refused(/a float32 tensor holds its elements in a Float32Array, got Float64Array; convert first/));
  assert.throws(() => makeTensor('int64', [2], new Int32Array(2) as unknown as ArrayFor['int64']), refused(/in a BigInt64Array, got Int32Array/));
  assert.throws(() => makeTensor('float32', [2], [1, 2] as unknown as ArrayFor['float32']), refused(/got Array/));
  assert.throws(() => makeTensor('float33' as 'float32', [2], new Float32Array(2)), refused(/unknown tensor dtype 'float33'/));
  // the right kinds, sub-byte and bool ones included, and a Buffer (a Uint8Array) pass
  assert.equal(makeTensor('uint4', [3], new Uint8Array(3)).dims[0], 3);
  assert.equal(makeTensor('bool', [2], Buffer.from([1, 0])).data.length, 2);
  assert.deepEqual(Array.from(f32([2], [1, 2]).data), [1, 2]);
  assert.throws(() => makeTensor('float32', [3], new Float32Array(2)), refused(/needs 3 elements, got 2/));
});
