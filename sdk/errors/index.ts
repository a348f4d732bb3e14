// One error class for the whole SDK. `code` is stable (callers, tests and telemetry match on it);
// the message says what was wrong, where, and what to do about it.

export type ErrorCode =
  // sdk/onnx
  | 'ONNX_READ_FAILED'
  | 'ONNX_TRUNCATED'
  | 'ONNX_NOT_A_MODEL'
  | 'ONNX_UNSUPPORTED_OPSET'
  | 'ONNX_UNSUPPORTED_IR_VERSION'
  | 'ONNX_DYNAMIC_SHAPE'
  | 'ONNX_INVALID_GRAPH'
  | 'ONNX_UNSUPPORTED_DTYPE'
  | 'ONNX_EXTERNAL_DATA'
  | 'ONNX_WRITE_FAILED'
  // sdk/runtime
  | 'RUNTIME_SESSION_FAILED'
  | 'RUNTIME_RUN_FAILED'
  | 'RUNTIME_NO_PROVIDER'
  // sdk/autodiff
  | 'AUTODIFF_NO_RULE'
  | 'AUTODIFF_BAD_REQUEST'
  // sdk/data
  | 'DATA_NOT_FOUND'
  | 'DATA_BAD_FORMAT'
  | 'DATA_BAD_SPEC'
  // sdk/quant
  | 'QUANT_BAD_BITS'
  | 'QUANT_CALIB_MISSING'
  | 'QUANT_CALIB_TOO_SMALL'
  | 'QUANT_NO_GRAD_RULE'
  | 'QUANT_BAD_MODEL'
  // sdk/adapt
  | 'ADAPT_NO_BN'
  | 'ADAPT_BAD_STATE'
  | 'ADAPT_CLOSED'
  // device, telemetry, tools
  | 'CONFIG_INVALID'
  | 'SOURCE_FAILED'
  | 'STATE_MISMATCH'
  | 'TELEMETRY_BAD_PAYLOAD'
  | 'TELEMETRY_CONNECT_FAILED'
  | 'TELEMETRY_BAD_TOPIC'
  | 'TELEMETRY_UNKNOWN_COMMAND'
  | 'TELEMETRY_COMMAND_FAILED'
  | 'TELEMETRY_TIMEOUT'
  | 'TELEMETRY_OUTBOX'
  | 'TELEMETRY_STORE'
  | 'CLI_USAGE'
  // sdk/eval/plot.ts: rendering or writing a plot failed
  | 'EVAL_PLOT_FAILED'
  // tools/demo.ts
  | 'DEMO_STEP_FAILED'
  // tools/bench.ts: a command a benchmark runs failed
  | 'BENCH_FAILED'
  | 'MANIFEST_INVALID'
  | 'MODEL_DOWNLOAD_FAILED'
  | 'INTERNAL';

export class TtaqError extends Error {
  override readonly name = 'TtaqError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Readonly<Record<string, unknown>> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Errors as values at module edges. */
export type Result<T, E = TtaqError> = { ok: true; value: T } | { ok: false; error: E };

export const ok = <T>(value: T): Result<T, never> => ({ ok: true, value });
export const err = <E = TtaqError>(error: E): Result<never, E> => ({ ok: false, error });

/** Unwraps a Result, throwing its error: for call sites where failure is a bug or fatal. */
export function unwrap<T>(r: Result<T, TtaqError>): T {
  if (r.ok) return r.value;
  throw r.error;
}

export const isTtaqError = (e: unknown): e is TtaqError => e instanceof TtaqError;
