// The PyTorch side of `ttaq bench`'s ratios: runs tools/baselines/pytorch_resnet20.py in a child
// process, in the same run as our own measurement, and reads its JSON lines. PyTorch is optional:
// without it the benchmarks fall back to the issues' reference constants and say so.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { err, ok, type Result } from '../../sdk/errors/index.ts';

export const PYTORCH_SCRIPT = fileURLToPath(new URL('./pytorch_resnet20.py', import.meta.url));

export type PytorchBench = 'train' | 'infer' | 'tent' | 'recon' | 'recon-net';

/** One figure of the baseline script: times in ms, `secondsPer1000` per 1,000 images (or iterations for recon). */
export interface PytorchRow {
  readonly bench: PytorchBench;
  readonly batch: number;
  readonly variant?: string;
  readonly stepMs?: number;
  readonly imagesPerSec?: number;
  readonly msPerBatch?: number;
  readonly msPerStep?: number;
  readonly secondsPer1000?: number;
  /** recon-net: iterations per block, total seconds and each block's. */
  readonly iterations?: number;
  readonly seconds?: number;
  readonly blocks?: readonly { readonly block: string; readonly seconds: number }[];
  readonly torch: string;
  readonly threads: number;
}

const BENCHES: readonly PytorchBench[] = ['train', 'infer', 'tent', 'recon', 'recon-net'];

/** Parses the script's stdout: one JSON object per line; other lines (warnings) are skipped. */
export function parseBaselineOutput(stdout: string): Result<PytorchRow[], string> {
  const rows: PytorchRow[] = [];
  for (const line of stdout.split('\n')) {
    const t = line.trim();
    if (!t.startsWith('{')) continue;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(t) as Record<string, unknown>;
    } catch {
      return err(`unreadable baseline line: ${t.slice(0, 120)}`);
    }
    if (!BENCHES.includes(o.bench as PytorchBench) || typeof o.batch !== 'number' || typeof o.torch !== 'string' || typeof o.threads !== 'number') {
      return err(`baseline line lacks bench/batch/torch/threads: ${t.slice(0, 120)}`);
    }
    rows.push(o as unknown as PytorchRow);
  }
  return rows.length ? ok(rows) : err('the baseline script printed no figures');
}

/** The Python to use: $TTAQ_PYTORCH_PYTHON, else python3 on the PATH. */
export const baselinePython = (env: NodeJS.ProcessEnv = process.env): string => env.TTAQ_PYTORCH_PYTHON || 'python3';

function exec(file: string, args: string[], timeoutMs: number, onLine?: (line: string) => void): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (e, stdout, stderr) => {
      const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (e ? e.message : '') });
    });
    if (onLine) {
      let rest = '';
      child.stderr?.on('data', (d: Buffer | string) => {
        const lines = (rest + String(d)).split('\n');
        rest = lines.pop()!;
        for (const l of lines) onLine(l);
      });
    }
  });
}

/**
 * Measures the given PyTorch baselines. An error value (not a throw) when no Python with torch is
 * found or the script fails: the caller falls back to reference constants and prints the reason.
 */
export async function measurePytorch(benches: readonly PytorchBench[], o: {
  threads: number; reps?: number; iterations?: number; python?: string; timeoutMs?: number;
  /** The script's progress lines ('recon-net <block>: <s> s'), as they come: a long baseline shows where it is. */
  onProgress?: (line: string) => void;
}): Promise<Result<PytorchRow[], string>> {
  const python = o.python ?? baselinePython();
  const probe = await exec(python, ['-c', 'import torch; print(torch.__version__)'], 60_000);
  if (probe.code !== 0) {
    return err(`no PyTorch baseline: '${python} -c "import torch"' failed (${probe.stderr.trim().split('\n').pop() || `exit ${probe.code}`}); ` +
      'install torch for that Python or point TTAQ_PYTORCH_PYTHON at one that has it');
  }
  const args = [PYTORCH_SCRIPT, ...benches, '--threads', String(o.threads), ...(o.reps ? ['--reps', String(o.reps)] : []), ...(o.iterations ? ['--iterations', String(o.iterations)] : [])];
  const r = await exec(python, args, o.timeoutMs ?? 30 * 60_000, o.onProgress && ((l) => { if (/^recon-net /.test(l)) o.onProgress!(l); }));
  if (r.code !== 0) return err(`PyTorch baseline failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return parseBaselineOutput(r.stdout);
}
