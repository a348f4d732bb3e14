// The Adapter at its edges: a closed adapter refuses every call with ADAPT_CLOSED, and an image
// holding a NaN or infinity is refused with the sample named while the adaptation state stays as it
// was (before: robust statistics took the NaN in, or the step reset itself as if it had diverged).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Adapter } from '../../sdk/adapt/index.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import { batch, tinyModel, tinyParams } from './helpers.ts';

const open: Adapter[] = [];
after(async () => { for (const a of open) await a.close(); });
async function make(method: string, options: Record<string, unknown> = {}): Promise<Adapter> {
  const a = await Adapter.create({ model: tinyModel(tinyParams(11)), method, options: { collapseEntropy: 0, updateEvery: 0, ...options } });
  open.push(a);
  return a;
}

const code = (c: string, re?: RegExp) => (e: unknown): boolean => {
  assert.ok(isTtaqError(e), `a TtaqError, got ${String(e)}`);
  assert.equal(e.code, c, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

describe('a closed adapter', () => {
  it('refuses every call with ADAPT_CLOSED naming Adapter.create; closing twice is harmless', async () => {
    const a = await make('tent');
    const saved = a.state();
    await a.close();
    await a.close();
    const closed = code('ADAPT_CLOSED', /on an adapter that was closed; create a new one with Adapter\.create/);
    await assert.rejects(a.step(batch(1, 4)), closed);
    await assert.rejects(a.infer(batch(1, 4)), closed);
    await assert.rejects(a.warmUp([2], [2, 3, 3]), closed);
    assert.throws(() => a.reset(), closed);
    assert.throws(() => a.state(), closed);
    assert.throws(() => a.restore(saved), closed);
    assert.throws(() => a.parameters(), closed);
  });
});

describe('a batch with a non-finite image', () => {
  for (const [method, options] of [['tent', {}], ['abl:robust', {}], ['bn', {}], ['tent', { episodic: true }]] as const) {
    it(`${method}${'episodic' in options ? ' (episodic)' : ''}: DATA_BAD_FORMAT naming the sample and element; state and counters unchanged`, async () => {
      const a = await make(method, options);
      await a.step(batch(2, 8));
      const before = a.state();
      const steps = a.counters.steps;
      for (const bad of [NaN, Infinity]) {
        const x = batch(3, 8);
        const data = Float32Array.from(x.data);
        data[5 * 18 + 4] = bad; // sample 5 of [8, 2, 3, 3], element 4
        await assert.rejects(a.step(f32(x.dims, data)), code('DATA_BAD_FORMAT', new RegExp(`sample 5 of the batch holds ${bad} at element 4; images must be finite`)));
      }
      assert.deepEqual(a.state(), before, 'the adaptation state is byte for byte what it was');
      assert.equal(a.counters.steps, steps);
      assert.equal(a.counters.nonFiniteResets, 0);
      const ok = await a.step(batch(4, 8));
      assert.ok(ok.logits.data.every(Number.isFinite), 'the next finite batch adapts as usual');
    });
  }
});
