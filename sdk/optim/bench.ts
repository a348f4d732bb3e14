// JavaScript loops vs one onnxruntime update graph, per optimizer and parameter count.
// Run: node --import tsx sdk/optim/bench.ts [--sizes 1000,1000000] [--reps 20] [--json]
import { GraphUpdater } from './graph.ts';
import { Adam, Sgd, type ParamArrays } from './optimizers.ts';

export interface OptimBenchRow {
  readonly optimizer: 'sgd-momentum' | 'adam';
  readonly params: number;
  /** Median milliseconds per update. */
  readonly jsMs: number;
  readonly graphMs: number;
  readonly faster: 'js' | 'graph';
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Splits `total` parameters into a few tensors, like a small network's layers. */
function makeParams(total: number): { params: Map<string, Float32Array>; grads: Map<string, Float32Array> } {
  const parts = total >= 1e5 ? [0.5, 0.3, 0.15, 0.05] : [0.6, 0.4];
  const params = new Map<string, Float32Array>();
  const grads = new Map<string, Float32Array>();
  let left = total;
  parts.forEach((f, i) => {
    const n = i === parts.length - 1 ? left : Math.round(total * f);
    left -= n;
    const p = new Float32Array(n);
    const g = new Float32Array(n);
    for (let k = 0; k < n; k++) { p[k] = Math.sin(k * 0.37 + i); g[k] = Math.cos(k * 0.11 - i) * 1e-2; }
    params.set(`w${i}`, p);
    grads.set(`w${i}`, g);
  });
  return { params, grads };
}

export async function benchOptimizers(o: { sizes?: readonly number[]; reps?: number } = {}): Promise<OptimBenchRow[]> {
  const rows: OptimBenchRow[] = [];
  for (const n of o.sizes ?? [1e3, 1e6]) {
    const reps = o.reps ?? (n >= 1e5 ? 15 : 200);
    for (const kind of ['sgd-momentum', 'adam'] as const) {
      const mk = (): Sgd | Adam => (kind === 'adam' ? new Adam({ lr: 1e-3 }) : new Sgd({ lr: 0.01, momentum: 0.9 }));
      const { params, grads } = makeParams(n);
      const js = mk();
      const jsT: number[] = [];
      for (let r = 0; r < reps + 3; r++) {
        const t = performance.now();
        js.step(params as ParamArrays, grads);
        if (r >= 3) jsT.push(performance.now() - t);
      }
      const g = mk();
      const up = await GraphUpdater.create(g, params, { providers: ['cpu'] });
      const gT: number[] = [];
      for (let r = 0; r < reps + 3; r++) {
        const t = performance.now();
        await up.step(params, grads);
        if (r >= 3) gT.push(performance.now() - t);
      }
      await up.release();
      const jsMs = median(jsT);
      const graphMs = median(gT);
      rows.push({ optimizer: kind, params: n, jsMs, graphMs, faster: jsMs <= graphMs ? 'js' : 'graph' });
    }
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (k: string): string | undefined => { const i = process.argv.indexOf(k); return i >= 0 ? process.argv[i + 1] : undefined; };
  const sizes = arg('--sizes')?.split(',').map(Number);
  const reps = arg('--reps') ? Number(arg('--reps')) : undefined;
  const rows = await benchOptimizers({ ...(sizes ? { sizes } : {}), ...(reps ? { reps } : {}) });
  if (process.argv.includes('--json')) console.log(JSON.stringify(rows, null, 2));
  else for (const r of rows) console.log(`${r.optimizer.padEnd(13)} ${String(r.params).padStart(8)} params  js ${r.jsMs.toFixed(3)} ms  graph ${r.graphMs.toFixed(3)} ms  -> ${r.faster}`);
}
