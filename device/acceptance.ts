// Accuracy of the agent on a labelled stream, with and without adaptation. The end-to-end
// acceptance (test/device/acceptance.test.ts: the bundled FP32 model on a gaussian-noise stream
// written by `ttaq corrupt --video`) calls `compareAdaptation` with the video and its per-frame
// labels (the label sidecar).
import pino from 'pino';
import { Agent, type AgentDeps } from './agent.ts';
import type { AgentConfig } from './config.ts';
import { AgentStore } from './store.ts';

export interface StreamAccuracy {
  readonly frames: number;
  readonly correct: number;
  readonly accuracy: number;
  readonly adaptSteps: number;
}

/**
 * Runs the agent over the whole video (every frame, no loop, prediction log on) and scores its
 * predictions against `labels[seq]` (frames without a label are not scored).
 */
export async function streamAccuracy(config: AgentConfig, labels: ArrayLike<number>, deps: AgentDeps = {}): Promise<StreamAccuracy> {
  const c: AgentConfig = {
    ...config,
    source: { ...config.source, mode: 'all', loop: false, realtime: false },
    storage: { ...config.storage, predictionLog: { enabled: true, maxRows: Math.max(config.storage.predictionLog.maxRows, labels.length + 1) } },
    http: { ...config.http, enabled: false },
    maxFrames: 0,
  };
  const agent = await Agent.create(c, { logger: pino({ level: 'warn' }), ...deps });
  await agent.start();
  const exit = await agent.done();
  const st = AgentStore.open(c.storage.path);
  try {
    const rows = st.db.prepare('SELECT seq, label FROM predictions WHERE run_id = ? ORDER BY id').all(agent.runId) as { seq: number; label: number }[];
    let frames = 0;
    let correct = 0;
    for (const r of rows) {
      const y = labels[r.seq];
      if (y === undefined) continue;
      frames++;
      if (y === r.label) correct++;
    }
    return { frames, correct, accuracy: frames ? correct / frames : 0, adaptSteps: exit.steps };
  } finally {
    st.close();
  }
}

/** The acceptance comparison: the same stream without and with adaptation (separate databases). */
export async function compareAdaptation(config: AgentConfig, labels: ArrayLike<number>, deps: AgentDeps = {}): Promise<{ source: StreamAccuracy; adapted: StreamAccuracy }> {
  const db = (suffix: string) => config.storage.path.replace(/(\.db)?$/, `-${suffix}.db`);
  const source = await streamAccuracy({ ...config, adaptation: { ...config.adaptation, enabled: false }, storage: { ...config.storage, path: db('source') } }, labels, deps);
  const adapted = await streamAccuracy({ ...config, adaptation: { ...config.adaptation, enabled: true, restore: false }, storage: { ...config.storage, path: db('adapted') } }, labels, deps);
  return { source, adapted };
}
