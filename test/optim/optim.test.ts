// Optimizers against independent float64 references, the onnxruntime update graph against the
// JavaScript loops, state round trips and learning-rate schedules.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { f32 } from '../../sdk/onnx/tensor.ts';
import {
  Adam,
  GraphUpdater,
  Sgd,
  cosineLr,
  createOptimizer,
  linearWarmup,
  multiStepLr,
  stateConfig,
  stateFromBytes,
  stateFromJson,
  stateToBytes,
  stateToJson,
  stepLr,
  type Optimizer,
} from '../../sdk/optim/index.ts';

const P0 = [0.5, -1.25, 2, 0.1];
const grads = (t: number): number[] => P0.map((_, i) => Math.sin(1.3 * t + i) * (i + 1) * 0.5);

function run(opt: Optimizer, steps: number): Float32Array {
  const p = Float32Array.from(P0);
  for (let t = 0; t < steps; t++) opt.step(new Map([['p', p]]), new Map([['p', Float32Array.from(grads(t))]]));
  return p;
}

const near = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol * (1 + Math.abs(b[i]!)), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
};

/** Reference SGD written out per element in float64. */
function refSgd(steps: number, lr: number, mu: number, damp: number, nesterov: boolean, wd: number): number[] {
  const p = [...P0];
  const buf = P0.map(() => 0);
  for (let t = 0; t < steps; t++) {
    const g = grads(t);
    for (let i = 0; i < p.length; i++) {
      let d = g[i]! + wd * p[i]!;
      if (mu) {
        buf[i] = t === 0 ? d : mu * buf[i]! + (1 - damp) * d;
        d = nesterov ? d + mu * buf[i]! : buf[i]!;
      }
      p[i] = p[i]! - lr * d;
    }
  }
  return p;
}

function refAdam(steps: number, lr: number, b1: number, b2: number, eps: number, wd: number, decoupled: boolean): number[] {
  const p = [...P0];
  const m = P0.map(() => 0);
  const v = P0.map(() => 0);
  for (let t = 1; t <= steps; t++) {
    const g = grads(t - 1);
    for (let i = 0; i < p.length; i++) {
      if (decoupled) p[i] = p[i]! * (1 - lr * wd);
      const gi = g[i]! + (decoupled ? 0 : wd * p[i]!);
      m[i] = b1 * m[i]! + (1 - b1) * gi;
      v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
      const mh = m[i]! / (1 - b1 ** t);
      const vh = v[i]! / (1 - b2 ** t);
      p[i] = p[i]! - (lr * mh) / (Math.sqrt(vh) + eps);
    }
  }
  return p;
}

describe('optimizers match float64 references', () => {
  test('SGD: plain, momentum, dampening, Nesterov, weight decay', () => {
    near(run(new Sgd({ lr: 0.1 }), 6), refSgd(6, 0.1, 0, 0, false, 0), 1e-6, 'plain');
    near(run(new Sgd({ lr: 0.1, momentum: 0.9 }), 6), refSgd(6, 0.1, 0.9, 0, false, 0), 1e-6, 'momentum');
    near(run(new Sgd({ lr: 0.05, momentum: 0.8, dampening: 0.3 }), 6), refSgd(6, 0.05, 0.8, 0.3, false, 0), 1e-6, 'dampening');
    near(run(new Sgd({ lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 }), 6), refSgd(6, 0.1, 0.9, 0, true, 0.01), 1e-6, 'nesterov+wd');
    near(run(new Sgd({ lr: 0.1, weightDecay: 0.5 }), 3), refSgd(3, 0.1, 0, 0, false, 0.5), 1e-6, 'wd');
  });
  test('Adam, Adam with L2, AdamW', () => {
    near(run(new Adam({ lr: 0.01 }), 8), refAdam(8, 0.01, 0.9, 0.999, 1e-8, 0, false), 1e-5, 'adam');
    near(run(new Adam({ lr: 0.01, weightDecay: 0.1 }), 8), refAdam(8, 0.01, 0.9, 0.999, 1e-8, 0.1, false), 1e-5, 'adam-l2');
    near(run(createOptimizer({ kind: 'adamw', lr: 0.01, weightDecay: 0.1, beta1: 0.8, beta2: 0.99 }), 8), refAdam(8, 0.01, 0.8, 0.99, 1e-8, 0.1, true), 1e-5, 'adamw');
  });
  test('updates tensors in place and skips parameters without a gradient', () => {
    const t = f32([2], [1, 2]);
    const u = Float32Array.from([3]);
    new Sgd({ lr: 0.5 }).step(new Map<string, Float32Array | typeof t>([['t', t], ['u', u]]), new Map([['t', f32([2], [1, 1])]]));
    assert.deepEqual(Array.from(t.data), [0.5, 1.5]);
    assert.deepEqual(Array.from(u), [3]);
  });
  test('minimises a quadratic', () => {
    for (const opt of [new Sgd({ lr: 0.1, momentum: 0.9 }), new Adam({ lr: 0.1 })]) {
      const p = Float32Array.from([3, -2]);
      for (let t = 0; t < 300; t++) opt.step(new Map([['p', p]]), new Map([['p', Float32Array.from([2 * (p[0]! - 1), 2 * (p[1]! + 0.5)])]]));
      near(p, [1, -0.5], 1e-2, opt.kind);
    }
  });
  test('bad options and mismatched gradients are refused with coded errors', () => {
    assert.throws(() => new Sgd({ lr: -1 }), (e) => isTtaqError(e) && e.code === 'CONFIG_INVALID');
    assert.throws(() => new Sgd({ lr: 0.1, nesterov: true }), (e) => isTtaqError(e) && /Nesterov/.test(e.message));
    assert.throws(() => new Adam({ lr: 0.1, beta1: 1 }), (e) => isTtaqError(e) && e.code === 'CONFIG_INVALID');
    assert.throws(() => new Sgd({ lr: 0.1 }).step(new Map([['p', new Float32Array(3)]]), new Map([['p', new Float32Array(2)]])), /2 elements/);
  });
});

describe('in-graph updates (onnxruntime) equal the JavaScript loops', () => {
  for (const mk of [
    () => new Sgd({ lr: 0.1, momentum: 0.9, weightDecay: 0.01 }),
    () => new Sgd({ lr: 0.1 }),
    () => new Adam({ lr: 0.01 }),
    () => new Adam({ lr: 0.01, weightDecay: 0.05, decoupled: true }),
  ]) {
    const o = mk();
    test(`${o.kind} ${JSON.stringify(o.state().hyper)}`, async () => {
      const js = mk();
      const gr = mk();
      const pj = new Map([['a', Float32Array.from(P0)], ['b', Float32Array.from([1, 2, 3])]]);
      const pg = new Map([['a', Float32Array.from(P0)], ['b', Float32Array.from([1, 2, 3])]]);
      const up = await GraphUpdater.create(gr, pg, { providers: ['cpu'] });
      for (let t = 0; t < 5; t++) {
        const g = new Map([['a', Float32Array.from(grads(t))], ['b', Float32Array.from([t, -t, 0.5])]]);
        js.step(pj, g);
        await up.step(pg, g);
      }
      await up.release();
      near(pg.get('a')!, pj.get('a')!, 1e-5, 'a');
      near(pg.get('b')!, pj.get('b')!, 1e-5, 'b');
      assert.equal(gr.steps, 5);
    });
  }
});

describe('state', () => {
  test('JSON and bytes round trips resume the exact same trajectory', () => {
    for (const mk of [() => new Sgd({ lr: 0.1, momentum: 0.9 }), () => new Adam({ lr: 0.01, decoupled: true })]) {
      const a = mk();
      const p = Float32Array.from(P0);
      for (let t = 0; t < 3; t++) a.step(new Map([['p', p]]), new Map([['p', Float32Array.from(grads(t))]]));
      const viaJson = stateFromJson(JSON.parse(JSON.stringify(stateToJson(a.state()))));
      const viaBytes = stateFromBytes(stateToBytes(a.state()));
      const b = createOptimizer(stateConfig(viaJson));
      b.load(viaJson);
      const c = mk();
      c.load(viaBytes);
      const pb = Float32Array.from(p);
      const pc = Float32Array.from(p);
      for (let t = 3; t < 6; t++) {
        const g = new Map([['p', Float32Array.from(grads(t))]]);
        a.step(new Map([['p', p]]), g);
        b.step(new Map([['p', pb]]), g);
        c.step(new Map([['p', pc]]), g);
      }
      assert.deepEqual(Array.from(pb), Array.from(p));
      assert.deepEqual(Array.from(pc), Array.from(p));
      assert.equal(b.steps, 6);
    }
  });
  test('mismatched or corrupt state is refused', () => {
    const s = new Sgd({ lr: 0.1, momentum: 0.5 });
    s.step(new Map([['p', new Float32Array(3)]]), new Map([['p', new Float32Array(3).fill(1)]]));
    assert.throws(() => new Adam({ lr: 0.1 }).load(s.state()), (e) => isTtaqError(e) && e.code === 'STATE_MISMATCH');
    const other = new Sgd({ lr: 0.1, momentum: 0.5 });
    other.load(s.state());
    assert.throws(() => other.step(new Map([['p', new Float32Array(4)]]), new Map([['p', new Float32Array(4)]])), (e) => isTtaqError(e) && e.code === 'STATE_MISMATCH');
    assert.throws(() => stateFromJson({ format: 'x' }), (e) => isTtaqError(e) && e.code === 'STATE_MISMATCH');
    assert.throws(() => stateFromBytes(new Uint8Array([1, 2, 3])), (e) => isTtaqError(e) && e.code === 'STATE_MISMATCH');
  });
});

describe('schedules', () => {
  test('cosine, step, multi-step and linear warm-up', () => {
    const cos = cosineLr({ base: 1, total: 100, min: 0.1 });
    near([cos(0), cos(50), cos(100), cos(200)], [1, 0.55, 0.1, 0.1], 1e-12, 'cosine');
    const st = stepLr({ base: 0.5, every: 10, gamma: 0.5 });
    near([st(0), st(9), st(10), st(25)], [0.5, 0.5, 0.25, 0.125], 1e-12, 'step');
    const ms = multiStepLr({ base: 1, milestones: [30, 10] });
    near([ms(9), ms(10), ms(30)], [1, 0.1, 0.01], 1e-12, 'multistep');
    const wu = linearWarmup(cos, { steps: 4 });
    near([wu(0), wu(3), wu(4), wu(50)], [cos(4) / 5, (cos(4) * 4) / 5, cos(4), cos(50)], 1e-12, 'warmup');
    for (let t = 1; t < 4; t++) assert.ok(wu(t) > wu(t - 1), 'warm-up increases');
    assert.throws(() => cosineLr({ base: 1, total: 0 }), (e) => isTtaqError(e) && e.code === 'CONFIG_INVALID');
  });
});
