// Learning-rate schedules: functions from the step index (0-based) to a learning rate.
import { TtaqError } from '../errors/index.ts';

export type Schedule = (step: number) => number;

const need = (ok: boolean, msg: string): void => {
  if (!ok) throw new TtaqError('CONFIG_INVALID', `learning-rate schedule: ${msg}`);
};

export const constantLr = (base: number): Schedule => () => base;

/** Cosine from `base` at step 0 to `min` at step `total` (held at `min` afterwards). */
export function cosineLr(o: { base: number; total: number; min?: number }): Schedule {
  need(o.total > 0, `total must be > 0, got ${o.total}`);
  const min = o.min ?? 0;
  return (t) => {
    const p = Math.min(Math.max(t, 0), o.total) / o.total;
    return min + 0.5 * (o.base - min) * (1 + Math.cos(Math.PI * p));
  };
}

/** `base * gamma^floor(t / every)`. */
export function stepLr(o: { base: number; every: number; gamma?: number }): Schedule {
  need(o.every > 0, `every must be > 0, got ${o.every}`);
  const gamma = o.gamma ?? 0.1;
  return (t) => o.base * gamma ** Math.floor(Math.max(t, 0) / o.every);
}

/** `base * gamma^(number of milestones <= t)`. */
export function multiStepLr(o: { base: number; milestones: readonly number[]; gamma?: number }): Schedule {
  const gamma = o.gamma ?? 0.1;
  const ms = [...o.milestones].sort((a, b) => a - b);
  return (t) => o.base * gamma ** ms.filter((m) => m <= t).length;
}

/**
 * Linear warm-up over the first `steps` steps, from `startFactor * after(steps)` up to `after(steps)`
 * (reached at step `steps`), then `after(t)` (which sees the global step index).
 */
export function linearWarmup(after: Schedule, o: { steps: number; startFactor?: number }): Schedule {
  need(o.steps >= 0, `warm-up steps must be >= 0, got ${o.steps}`);
  const f0 = o.startFactor ?? 0;
  return (t) => {
    if (t >= o.steps) return after(t);
    const target = after(o.steps);
    return target * (f0 + (1 - f0) * ((t + 1) / (o.steps + 1)));
  };
}
