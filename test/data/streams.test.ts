import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CORRUPTIONS, corruptImages } from '../../sdk/data/corruptions/index.ts';
import { DataRng, sampleDirichlet } from '../../sdk/data/rng.ts';
import { materializeStream, planStream, resolveStreamSpec } from '../../sdk/data/streams.ts';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { graySet } from './helpers.ts';

test('Dirichlet sampler: mean and variance of a proportion match Dirichlet(alpha)', () => {
  const K = 10;
  for (const alpha of [0.1, 1, 5]) {
    const rng = new DataRng(42, Math.round(alpha * 10));
    const n = 6000;
    const xs: number[] = [];
    for (let i = 0; i < n; i++) {
      const p = sampleDirichlet(rng, alpha, K);
      assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-9);
      xs.push(p[i % K]!);
    }
    const mean = xs.reduce((a, b) => a + b, 0) / n;
    const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
    const wantVar = (1 / K) * (1 - 1 / K) / (K * alpha + 1);
    assert.ok(Math.abs(mean - 1 / K) < 0.012, `alpha ${alpha}: mean ${mean.toFixed(4)} vs ${1 / K}`);
    assert.ok(Math.abs(variance / wantVar - 1) < 0.15, `alpha ${alpha}: variance ${variance.toExponential(3)} vs ${wantVar.toExponential(3)}`);
  }
});

const labels = Array.from({ length: 600 }, (_, i) => (i * 7) % 10);

test('continual plan: 15 domains in protocol order, each a permutation of the source', () => {
  const spec = resolveStreamSpec('continual', { perDomain: 600 });
  const plan = planStream(spec, labels);
  assert.equal(plan.length, 15 * 600);
  assert.deepEqual(plan.domains, CORRUPTIONS);
  for (let d = 0; d < 15; d++) {
    const idx = Array.from(plan.index.subarray(d * 600, (d + 1) * 600)).sort((a, b) => a - b);
    assert.deepEqual(idx, Array.from({ length: 600 }, (_, i) => i));
    assert.ok(plan.domain.subarray(d * 600, (d + 1) * 600).every((v) => v === d));
    assert.ok(plan.severity.every((v) => v === 5));
  }
  const again = planStream(spec, labels);
  assert.deepEqual(again.index, plan.index);
  const other = planStream(resolveStreamSpec('continual', { perDomain: 600, seed: 1 }), labels);
  assert.notDeepEqual(other.index, plan.index);
});

test('imbalanced plan: segments are label-shifted, as Dirichlet(0.1) predicts', () => {
  const spec = resolveStreamSpec({ domains: ['fog'], order: { kind: 'dirichlet', alpha: 0.1, segment: 50 } }, { perDomain: 600 });
  const plan = planStream(spec, labels);
  const shuffled = planStream(resolveStreamSpec({ domains: ['fog'] }, { perDomain: 600 }), labels);
  const topShare = (lab: Int32Array): number => {
    let s = 0;
    const segs = 8; // the first 400 steps; later segments run short of the classes already used up
    for (let g = 0; g < segs; g++) {
      const counts = new Array(10).fill(0);
      for (let t = g * 50; t < (g + 1) * 50; t++) counts[lab[t]!]++;
      s += Math.max(...counts) / 50;
    }
    return s / segs;
  };
  // Dirichlet(0.1) over 10 classes puts about 0.6 of the mass on its top class; uniform about 0.2
  assert.ok(topShare(plan.label) > 0.45, `imbalanced top-class share ${topShare(plan.label)}`);
  assert.ok(topShare(shuffled.label) < 0.3, `shuffled top-class share ${topShare(shuffled.label)}`);
  assert.deepEqual(Array.from(plan.index).sort((a, b) => a - b), Array.from({ length: 600 }, (_, i) => i));
});

test('temporal plan has runs of one class; gradual ramps severity up and down; mixed interleaves', () => {
  const runs = planStream(resolveStreamSpec({ domains: ['fog'], order: { kind: 'runs', meanRun: 8 } }), labels);
  let changes = 0;
  for (let t = 1; t < runs.length; t++) if (runs.label[t] !== runs.label[t - 1]) changes++;
  const meanRun = runs.length / (changes + 1);
  assert.ok(meanRun > 5 && meanRun < 12, `mean run ${meanRun}`);
  const gradual = planStream(resolveStreamSpec('gradual', { domains: ['fog', 'snow'], perDomain: 90 }), labels);
  const sev = Array.from(gradual.severity.subarray(0, 90));
  assert.deepEqual(sev.filter((v, i) => i === 0 || v !== sev[i - 1]), [1, 2, 3, 4, 5, 4, 3, 2, 1]);
  assert.equal(sev[0], 1);
  assert.equal(sev[45], 5);
  const mixed = planStream(resolveStreamSpec('mixed', { perDomain: 40 }), labels);
  let switches = 0;
  for (let t = 1; t < mixed.length; t++) if (mixed.domain[t] !== mixed.domain[t - 1]) switches++;
  assert.ok(switches > mixed.length / 2, `mixed stream switched domain ${switches} times in ${mixed.length}`);
});

test('a materialised stream matches the whole-dataset corruption of the same samples', () => {
  const src = graySet(12);
  const plan = planStream(resolveStreamSpec({ domains: ['clean', 'shot_noise', 'frost'], severity: 3, seed: 4 }), src.labels);
  const s = materializeStream(plan, src);
  const per = 28 * 28;
  const whole = { clean: src.images, shot_noise: corruptImages(src, 'shot_noise', 3, { seed: 4 }), frost: corruptImages(src, 'frost', 3, { seed: 4 }) };
  for (let t = 0; t < s.count; t++) {
    const name = plan.domains[s.domain[t]!]! as keyof typeof whole;
    const i = plan.index[t]!;
    assert.deepEqual(s.images.subarray(t * per, (t + 1) * per), whole[name].subarray(i * per, (i + 1) * per), `step ${t}`);
    assert.equal(s.labels[t], src.labels[i]);
  }
});

test('bad stream specs fail with DATA_BAD_SPEC naming the key', () => {
  assert.throws(() => resolveStreamSpec('sideways'), (e: unknown) => isTtaqError(e) && e.code === 'DATA_BAD_SPEC' && /continual/.test(e.message));
  assert.throws(() => resolveStreamSpec({ severity: 9 }), (e: unknown) => isTtaqError(e) && /'severity'/.test(e.message));
  assert.throws(() => resolveStreamSpec({ domains: ['rain'] }), (e: unknown) => isTtaqError(e) && /unknown domain 'rain'/.test(e.message));
});
