// Learning-rate schedules, evaluated per iteration.
import { TtaqError } from '../errors/index.ts';

export type ScheduleKind = 'cosine' | 'step' | 'constant';

export interface ScheduleSpec {
  readonly kind: ScheduleKind;
  readonly baseLr: number;
  readonly totalSteps: number;
  /** Linear warm-up from 0 over this many steps (default 0). */
  readonly warmupSteps?: number;
  /** 'step': multiply by `gamma` at each of these fractions of training (default 0.5, 0.75; gamma 0.1). */
  readonly milestones?: readonly number[];
  readonly gamma?: number;
  /** 'cosine': final learning rate (default 0). */
  readonly minLr?: number;
}

/** The learning rate of iteration `step` (0-based). */
export function lrAt(s: ScheduleSpec, step: number): number {
  if (!(s.baseLr > 0) || !(s.totalSteps > 0)) {
    throw new TtaqError('CONFIG_INVALID', `learning-rate schedule needs a positive base lr and step count, got lr ${s.baseLr}, steps ${s.totalSteps}`);
  }
  const warm = s.warmupSteps ?? 0;
  if (step < warm) return (s.baseLr * (step + 1)) / warm;
  switch (s.kind) {
    case 'constant':
      return s.baseLr;
    case 'step': {
      const frac = step / s.totalSteps;
      const passed = (s.milestones ?? [0.5, 0.75]).filter((m) => frac >= m).length;
      return s.baseLr * (s.gamma ?? 0.1) ** passed;
    }
    case 'cosine': {
      const span = Math.max(1, s.totalSteps - warm);
      const t = Math.min(1, (step - warm) / span);
      const min = s.minLr ?? 0;
      return min + 0.5 * (s.baseLr - min) * (1 + Math.cos(Math.PI * t));
    }
  }
}
