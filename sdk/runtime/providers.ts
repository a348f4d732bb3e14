// Execution-provider choice: a preference list resolved against what the installed onnxruntime-node
// binary can actually run, with one logged reason per provider skipped. Pure except for
// `defaultAvailableProviders`, which asks the binding (tests inject their own list instead).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { TtaqError } from '../errors/index.ts';

/** Provider names as onnxruntime-node spells them. */
export type ProviderName = 'tensorrt' | 'cuda' | 'cpu' | 'webgpu' | 'dml' | 'coreml' | (string & {});

/** The names ProviderName spells out: onnxruntime-node's execution providers across its builds. */
export const PROVIDER_NAMES: readonly ProviderName[] = ['tensorrt', 'cuda', 'cpu', 'webgpu', 'dml', 'coreml'];

export const DEFAULT_PROVIDERS: readonly ProviderName[] = ['tensorrt', 'cuda', 'cpu'];

export interface RuntimeLogEvent {
  readonly level: 'info' | 'warn';
  readonly message: string;
  /** The provider the event is about. */
  readonly provider?: string;
  readonly reason?: string;
}

export type RuntimeLogger = (e: RuntimeLogEvent) => void;

const printed = new Set<string>();
/**
 * The default logger: each distinct warning once per process on stderr; info lines only with
 * TTAQ_DEBUG=1 (falling back from the default GPU preference on a CPU box is routine, not news).
 */
export const defaultLogger: RuntimeLogger = (e) => {
  if (e.level === 'info' && process.env.TTAQ_DEBUG !== '1') return;
  if (printed.has(e.message)) return;
  printed.add(e.message);
  process.stderr.write(`ttaq runtime: ${e.message}\n`);
};

function bindingDir(): string | undefined {
  try {
    const main = createRequire(import.meta.url).resolve('onnxruntime-node');
    return join(dirname(main), '..', 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return undefined;
  }
}

const libName = (provider: string): string =>
  process.platform === 'win32' ? `onnxruntime_providers_${provider}.dll` : `libonnxruntime_providers_${provider}.so`;

let cachedAvailable: readonly string[] | undefined;

/**
 * Providers the installed binary can run: those bundled in it, plus the non-bundled ones
 * (cuda, tensorrt) whose provider library has been installed next to the binding.
 */
export function defaultAvailableProviders(): readonly string[] {
  if (cachedAvailable) return cachedAvailable;
  const dir = bindingDir();
  cachedAvailable = ort.listSupportedBackends()
    .filter((b) => b.bundled || (dir !== undefined && existsSync(join(dir, libName(b.name)))))
    .map((b) => b.name);
  return cachedAvailable;
}

/**
 * How an x64 Linux user gets the CUDA/TensorRT provider libraries. `npm rebuild` reruns
 * onnxruntime-node's install script (its postinstall) without re-resolving the dependency, as
 * `npm install` would. The script reads $ONNXRUNTIME_NODE_INSTALL, else
 * $npm_config_onnxruntime_node_install, which npm sets from this command-line flag in preference
 * to the project's `.npmrc` (`onnxruntime-node-install=skip`); `cuda12` makes it download the
 * CUDA 12 binaries. README.md and docs/JETSON.md quote this same line
 * (test/runtime/provider-install-hint.test.ts).
 */
export const GPU_INSTALL_COMMAND = 'npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12';

/**
 * The way out for a missing cuda or tensorrt provider library, as the runtime's log line and
 * `ttaq providers` say it; undefined for other providers.
 */
export function gpuInstallHint(provider: string): string | undefined {
  if (provider !== 'cuda' && provider !== 'tensorrt') return undefined;
  return `on x64 Linux with CUDA 12 install the GPU libraries with '${GPU_INSTALL_COMMAND}'; on a Jetson build onnxruntime-node with CUDA and TensorRT (docs/JETSON.md)`;
}

/** Why a provider is not available, for the log line. */
function unavailableReason(name: string, available: readonly string[]): string {
  const hint = gpuInstallHint(name);
  if (hint) return `this onnxruntime-node build has no ${name} provider library (available: ${available.join(', ') || 'none'}); ${hint}`;
  return `not supported by this onnxruntime-node build (available: ${available.join(', ') || 'none'})`;
}

/**
 * Filters the preference list down to the available providers, in preference order, logging one
 * reason per provider skipped. Throws RUNTIME_NO_PROVIDER when none is left.
 */
export function resolveProviders(
  preference: readonly ProviderName[],
  available: readonly string[],
  log: RuntimeLogger,
  explicit = true,
): ProviderName[] {
  const out: ProviderName[] = [];
  const level = explicit ? 'warn' : 'info';
  for (const p of preference) {
    if (out.includes(p)) continue;
    if (available.includes(p)) {
      out.push(p);
      continue;
    }
    const next = preference.slice(preference.indexOf(p) + 1).find((q) => available.includes(q));
    const reason = unavailableReason(p, available);
    log({ level, provider: p, reason, message: `provider '${p}' skipped: ${reason}${next ? `; trying '${next}'` : ''}` });
  }
  if (out.length === 0) {
    throw new TtaqError(
      'RUNTIME_NO_PROVIDER',
      `none of the requested execution providers [${preference.join(', ')}] is available in this onnxruntime-node build ` +
        `(available: ${available.join(', ') || 'none'}); add 'cpu' to the providers option`,
      { requested: [...preference], available: [...available] },
    );
  }
  return out;
}

/**
 * Providers that execute BatchNormalization in training mode (opset 15 on). onnxruntime-node 1.30's
 * WebGPU provider registers a BatchNormalization kernel, so it takes the node, and then fails at
 * run time with "BatchNormalization trainingMode is not supported yet" (seen on an NVIDIA H200);
 * TensorRT's parser leaves the node to CUDA or the CPU inside the same session. Unknown providers
 * count as unable: their graphs get the statistics from reductions instead (autodiff's 'fused'
 * BN lowering), which every provider runs.
 */
const BN_TRAINING_MODE_PROVIDERS: ReadonlySet<string> = new Set(['cpu', 'cuda', 'tensorrt']);

/**
 * Whether every provider a session may end up on (the preference resolved against the binary's,
 * in order) runs training-mode BatchNormalization: graphs built for such a session may use it.
 */
export function runsBatchNormTraining(preference: readonly ProviderName[] = DEFAULT_PROVIDERS, available: readonly string[] = defaultAvailableProviders()): boolean {
  const usable = preference.filter((p) => available.includes(p));
  return usable.every((p) => BN_TRAINING_MODE_PROVIDERS.has(p));
}
