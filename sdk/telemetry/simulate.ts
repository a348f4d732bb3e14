// Plausible telemetry for demos, benchmarks and tests: a camera that runs at ~25 fps, meets a
// domain shift at step `shiftAt` (entropy and drift jump, confidence drops), and adapts (entropy
// and loss decay back). Deterministic for a given seed.
import type { EventBody, TelemetryBody } from './schemas.ts';

export interface SimulatedDevice {
  /** Telemetry for report number `step` (0-based). */
  telemetry(step: number): TelemetryBody;
  /** The event that goes with report `step`, if any. */
  event(step: number): EventBody | null;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function simulatedDevice(seed = 1, classes = 10, shiftAt = 40): SimulatedDevice {
  const rand = mulberry32(seed);
  const sha = (seed.toString(16).padStart(8, '0') + 'ab12cd34').repeat(4).slice(0, 64);
  const noise = (s: number) => (rand() - 0.5) * 2 * s;
  let sumCos = 0;
  for (let c = 0; c < classes; c++) sumCos += Math.cos(c);
  return {
    telemetry(step) {
      const since = step - shiftAt;
      const shifted = since >= 0;
      const recovery = shifted ? Math.exp(-since / 15) : 0;
      const entropy = 0.35 + (shifted ? 0.25 + 0.9 * recovery : 0) + noise(0.04);
      const histogram = Array.from({ length: classes }, (_, c) => Math.round(50 * (1 + 0.6 * Math.sin(c + (shifted ? 2 : 0))) * (0.8 + 0.4 * rand())));
      const total = histogram.reduce((a, b) => a + b, 0);
      return {
        intervalS: 10,
        fps: 25 - (shifted ? 2 * recovery : 0) + noise(0.6),
        latencyP50Ms: 18 + noise(1),
        latencyP95Ms: 31 + noise(3) + (shifted ? 6 * recovery : 0),
        droppedFrames: Math.max(0, Math.round(noise(2) + (shifted ? 5 * recovery : 0))),
        meanEntropy: Math.max(0, entropy),
        meanConfidence: Math.min(1, Math.max(0, 0.9 - (shifted ? 0.1 + 0.3 * recovery : 0) + noise(0.02))),
        classHistogram: histogram,
        ablPriors: histogram.map((h, c) => 0.6 * (h / total) + 0.4 * (1 + 0.5 * Math.cos(c)) / (classes + 0.5 * sumCos)),
        adaptLoss: shifted ? 0.3 + 1.1 * recovery + noise(0.05) : 0.3 + noise(0.05),
        adaptSteps: step * 25,
        resets: shifted ? 1 : 0,
        paused: false,
        driftScore: Math.max(0, (shifted ? 0.4 + 2.5 * recovery : 0.15) + noise(0.05)),
        provider: 'cpu',
        memoryMb: 180 + step * 0.05 + noise(2),
        modelSha256: sha,
      };
    },
    event(step) {
      if (step === shiftAt) return { type: 'shift_detected', score: 2.9, threshold: 1.5, message: 'drift score above threshold' };
      if (step === shiftAt + 1) return { type: 'reset', reason: 'drift' };
      if (step > 0 && step % 50 === 0) return { type: 'checkpoint', step: step * 25 };
      return null;
    },
  };
}
