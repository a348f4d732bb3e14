// Shared command-line plumbing: flag parsing with a usage message, error reporting with exit
// codes that mean something, machine-readable output.
import { closeSync, existsSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isTtaqError, TtaqError, type ErrorCode } from '../../sdk/errors/index.ts';

/** Exit codes: 0 ok, 1 the job failed, 2 bad usage or input. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses flags; `--help` prints `help` and returns null. Unknown flags are a usage error. */
export function parseFlags<O extends Options>(argv: string[], options: O, help: string) {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(help.trimEnd() + '\n');
    return null;
  }
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new TtaqError('CLI_USAGE', `${(e as Error).message}\n\n${help}`);
  }
}

/**
 * Errors that say the input was wrong (flags, config, data, model file, bit widths), not that the
 * job failed: exit code 2, as every command's help promises for bad usage or input.
 */
const INPUT_ERRORS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'CLI_USAGE', 'CONFIG_INVALID', 'MANIFEST_INVALID',
  'DATA_NOT_FOUND', 'DATA_BAD_FORMAT', 'DATA_BAD_SPEC',
  'ONNX_READ_FAILED', 'ONNX_TRUNCATED', 'ONNX_NOT_A_MODEL', 'ONNX_UNSUPPORTED_OPSET',
  'ONNX_UNSUPPORTED_IR_VERSION', 'ONNX_UNSUPPORTED_DTYPE', 'ONNX_EXTERNAL_DATA', 'ONNX_DYNAMIC_SHAPE',
  'QUANT_BAD_BITS', 'QUANT_CALIB_MISSING', 'QUANT_CALIB_TOO_SMALL',
  // a model the quantizer cannot take (two inputs, nothing to quantize, an op without a gradient
  // rule inside a block) and a state or checkpoint file of another run: the input is what to change
  'QUANT_BAD_MODEL', 'QUANT_NO_GRAD_RULE', 'STATE_MISMATCH',
  'TELEMETRY_BAD_TOPIC',
]);

/** Prints an error for a person (or as JSON with TTAQ_JSON_ERRORS=1) and returns the exit code. */
export function reportError(e: unknown): number {
  if (isTtaqError(e)) {
    if (process.env.TTAQ_JSON_ERRORS === '1') {
      process.stderr.write(JSON.stringify({ error: { code: e.code, message: e.message, ...e.details } }) + '\n');
    } else {
      process.stderr.write(`ttaq: ${e.message} [${e.code}]\n`);
    }
    return INPUT_ERRORS.has(e.code) ? EXIT.usage : EXIT.failed;
  }
  process.stderr.write(`ttaq: unexpected failure: ${(e as Error)?.stack ?? String(e)}\n`);
  return EXIT.failed;
}

/** An integer flag: undefined when absent; a usage error naming the flag when not an integer in [min, max]. */
export function intFlag(v: string | undefined, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new TtaqError('CLI_USAGE', `--${name} ${v}: expected an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}`);
  }
  return n;
}

/** A number flag (seconds, rates): undefined when absent; a usage error when not a number > 0. */
export function positiveFlag(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new TtaqError('CLI_USAGE', `--${name} ${v}: expected a number > 0`);
  return n;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? Number(v) : v), 2) + '\n');
}

/**
 * Creates `dir` and the missing folders above it, one level at a time from the nearest one that
 * exists. Not mkdirSync's recursive mode: a pseudo-filesystem such as /proc answers ENOENT to a
 * mkdir whose parent is there, and Node 20's recursive mkdir then retries the parent forever.
 */
function makeFolders(dir: string): void {
  const missing: string[] = [];
  let d = dir;
  for (; !existsSync(d) && dirname(d) !== d; d = dirname(d)) missing.push(d);
  if (existsSync(d) && !statSync(d).isDirectory()) throw new Error(`'${d}' is a file, not a folder`);
  for (const m of missing.reverse()) {
    try {
      mkdirSync(m);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && statSync(m).isDirectory()) continue;
      if (code === 'ENOENT') throw new Error(`'${dirname(m)}' takes no new folders (mkdir '${m}': ENOENT; a pseudo-filesystem such as /proc or /sys)`);
      throw e;
    }
  }
}

/** Opens `path` for writing without changing it (a file made for the test is removed again). */
function probeWrite(path: string): void {
  if (existsSync(path)) {
    closeSync(openSync(path, 'r+'));
    return;
  }
  closeSync(openSync(path, 'wx'));
  unlinkSync(path);
}

/**
 * Makes sure a command can write `path` before it starts work: creates the missing folders above it,
 * refuses a path that is a folder or sits under a file, and opens it for writing once (permission
 * bits do not tell: root passes every check, and /proc refuses files whatever they say). Checked up
 * front because the quantizer and the evaluation write their results only at the end, and a path
 * found bad then costs the run.
 */
export function prepareOutputFile(path: string, flag: string): void {
  if (existsSync(path) && statSync(path).isDirectory()) {
    throw new TtaqError('CLI_USAGE', `${flag} '${path}' is a folder; give a file name inside it`);
  }
  const file = resolve(path);
  try {
    makeFolders(dirname(file));
  } catch (e) {
    throw new TtaqError('CLI_USAGE', `${flag} '${path}': cannot create its folder (${(e as Error).message}); choose a writable location`, { path }, { cause: e });
  }
  try {
    probeWrite(file);
  } catch (e) {
    throw new TtaqError('CLI_USAGE', `${flag} '${path}': cannot write there (${(e as Error).message}); choose a writable location`, { path }, { cause: e });
  }
}
