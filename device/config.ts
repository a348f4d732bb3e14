// The agent's configuration: one zod schema is the single source of truth for `agent.yaml`, the
// defaults and the TypeScript types. `loadAgentConfig` reads YAML or JSON, applies `--set`-style
// overrides, validates, and resolves relative paths against the config file's folder. A bad key
// gives CONFIG_INVALID naming the key, what was wrong and how to fix it.
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DEFAULT_MODEL_PATH } from '../sdk/bundled/index.ts';
import { methodOptions, type AdaptOptionsInput } from '../sdk/adapt/options.ts';
import { TtaqError } from '../sdk/errors/index.ts';

/** The video the agent reads when the config names none (write one with `ttaq corrupt`). */
export const DEFAULT_VIDEO = 'data/stream.mp4';

const ms = (def: number) => z.number().int().min(0).default(def);

export const SourceSchema = z.strictObject({
  /**
   * What to read: a video file path, an RTSP/HTTP URL, a V4L2 device (`/dev/video0` or an index
   * such as `0`), or a GStreamer pipeline ending in `appsink` (Jetson CSI: `nvarguscamerasrc ! ...`).
   * An index may be written as a number: YAML and `--set source.uri=0` read `0` as one, and a
   * camera index is the only thing a whole number can mean here.
   */
  uri: z.union([z.string().min(1), z.number().int().min(0).transform(String)]).default(DEFAULT_VIDEO),
  /** How to open `uri`; `auto` decides from its form (see `detectSourceKind`). */
  kind: z.enum(['auto', 'file', 'rtsp', 'v4l2', 'gstreamer']).default('auto'),
  /**
   * `latest`: keep only the newest frame while the pipeline is busy, counting the ones replaced as
   * dropped (cameras). `all`: read a frame only when the pipeline wants one (files: every frame is
   * processed). `auto`: `all` for files, `latest` otherwise.
   */
  mode: z.enum(['auto', 'latest', 'all']).default('auto'),
  /** Process every n-th frame (1 = all). */
  stride: z.number().int().min(1).default(1),
  /** Files only: start again at the end instead of stopping the agent. */
  loop: z.boolean().default(false),
  /** Files only: pace reads at the file's frame rate, like a camera would deliver them. */
  realtime: z.boolean().default(false),
  /** V4L2 only: requested capture size and rate (0 = the device's default). */
  width: z.number().int().min(0).default(0),
  height: z.number().int().min(0).default(0),
  fps: z.number().min(0).default(0),
  reconnect: z
    .strictObject({
      /** First wait after a failure; doubles (times `factor`) per failed attempt up to `maxDelayMs`. */
      initialDelayMs: ms(500),
      maxDelayMs: ms(30_000),
      factor: z.number().min(1).default(2),
      /** Give up (and stop the agent with an error) after this many failed attempts in a row; 0 = never. */
      maxAttempts: z.number().int().min(0).default(0),
      /** A live source that delivers no frame for this long is treated as failed and reopened. */
      stallTimeoutMs: ms(10_000),
    })
    .prefault({}),
});

export const ModelSchema = z.strictObject({
  /** The ONNX model file; default the package's bundled ResNet-20, by absolute path (found from any
   * working directory). */
  path: z.string().min(1).default(DEFAULT_MODEL_PATH),
  /** Its manifest; default: `<model>.manifest.json` beside it. */
  manifest: z.string().min(1).optional(),
  /**
   * Execution providers in order of preference; unavailable ones are skipped with a logged reason.
   * webgpu: the stock binary's GPU path (docs/JETSON.md), not in the default chain.
   */
  providers: z.array(z.enum(['tensorrt', 'cuda', 'webgpu', 'cpu'])).min(1).default(['tensorrt', 'cuda', 'cpu']),
  tensorrt: z
    .strictObject({
      /** Where built TensorRT engines are cached (the first start on a Jetson builds them: minutes). */
      cacheDir: z.string().default('state/trt-cache'),
      fp16: z.boolean().default(true),
      int8: z.boolean().default(false),
      /** Builder workspace limit in MiB (0 = TensorRT's default). */
      workspaceMb: z.number().int().min(0).default(1024),
    })
    .prefault({}),
  cuda: z.strictObject({ deviceId: z.number().int().min(0).default(0) }).prefault({}),
  /**
   * CPU threads for onnxruntime (0 = one per core less one, at least one: the capture process
   * decodes and preprocesses on the core left over). On the 2-core development VM, the model on one
   * thread ran the pipeline at 1,588 frames/s against 1,731 for the model alone (8 % overhead);
   * with both cores the model alone reached 2,979 and the agent 1,965 (34 % overhead), because
   * capture and model then fight for the same cores (docs/BENCHMARKS.md). Set it to the core count
   * for the most frames per second on a CPU-only box.
   */
  intraOpThreads: z.number().int().min(0).default(0),
  /**
   * Let onnxruntime's idle CPU workers spin between runs. Off by default: the capture process,
   * preprocessing and the agent's bookkeeping share the same cores, and spinning workers take
   * their CPU time (see docs/BENCHMARKS.md for the measured difference).
   */
  spinning: z.boolean().default(false),
  /** Where models fetched by a `reload` with a URL are kept, named by their SHA-256. */
  cacheDir: z.string().default('state/models'),
  /** Allow plain http:// model URLs (a closed network); https:// only otherwise. */
  allowHttp: z.boolean().default(false),
  /** Largest model a URL reload downloads (MiB). */
  downloadMaxMb: z.number().int().min(1).default(1024),
});

export const BatchSchema = z.strictObject({
  /** Frames per batch. */
  size: z.number().int().min(1).max(1024).default(8),
  /** Longest wait for a batch to fill after its first frame; a partial batch runs then. */
  maxWaitMs: ms(100),
});

export const ShiftSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Drift score (z-score of the batch's mean normalised entropy / BN statistics vs their EMA) that counts as a shift. */
  threshold: z.number().positive().default(4),
  /** Momentum of the reference EMA the score compares against. */
  momentum: z.number().min(0).max(1).default(0.95),
  /** Batches seen before the detector may fire (lets the reference settle). */
  warmupBatches: z.number().int().min(0).default(10),
  /** After a shift, adapt on every batch for this many batches. */
  adaptBatches: z.number().int().min(1).default(20),
});

export const AdaptationSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Adaptation method for sdk/adapt (`abl`, `tent`, `eata`, `bn`, optionally `:robust`). */
  method: z.string().min(1).default('abl:robust'),
  /** Extra adapter options, passed to sdk/adapt as they are (validated there). */
  options: z.record(z.string(), z.unknown()).default({}),
  /** Adapt on every k-th batch (1 = every batch, 0 = only after a detected shift). */
  every: z.number().int().min(0).default(1),
  shift: ShiftSchema.prefault({}),
  /** Write an adaptation-state checkpoint every n adaptation steps (0 = only at shutdown). */
  checkpointEvery: z.number().int().min(0).default(50),
  /** Restore the last checkpoint of the same model at start. */
  restore: z.boolean().default(true),
});

export const StorageSchema = z.strictObject({
  /** The agent's SQLite database (checkpoints, run log, prediction log). */
  path: z.string().min(1).default('state/agent.db'),
  /**
   * Every frame's prediction, written in one transaction per second (or 256 rows) and at shutdown:
   * a crash loses at most the last second of rows.
   */
  predictionLog: z
    .strictObject({
      enabled: z.boolean().default(false),
      /** Oldest rows are deleted beyond this many. */
      maxRows: z.number().int().min(1).default(100_000),
    })
    .prefault({}),
  /** Checkpoints kept per model (older ones are deleted). */
  keepCheckpoints: z.number().int().min(1).default(3),
});

export const TelemetrySchema = z.strictObject({
  enabled: z.boolean().default(false),
  /** MQTT broker. */
  url: z.string().default('mqtt://localhost:1883'),
  /** This device's id in topics; default: the host name. */
  deviceId: z.string().min(1).optional(),
  /** How often a metrics snapshot is published. */
  intervalSec: z.number().positive().default(10),
  /** The outbox database that holds messages while the broker is unreachable; default beside storage.path. */
  outbox: z.string().optional(),
  /** User name for a broker with password_file (Mosquitto) or built-in auth (EMQX). */
  username: z.string().min(1).optional(),
  /**
   * The environment variable that holds the password: a secret never sits in agent.yaml, which is
   * printed by --print-config and copied around. systemd: EnvironmentFile= (ttaq-agent.service).
   */
  passwordEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name').default('TTAQ_MQTT_PASSWORD'),
  /** TLS (mqtts://): PEM file paths of the CA that signed the broker, and a client certificate and key for mutual TLS. */
  tls: z
    .strictObject({
      ca: z.string().min(1).optional(),
      cert: z.string().min(1).optional(),
      key: z.string().min(1).optional(),
      /** Host name to check the broker's certificate against, when it differs from the URL's. */
      servername: z.string().min(1).optional(),
    })
    .optional(),
});

export const HttpSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** 0.0.0.0 to let a fleet's Prometheus scrape it; the default only answers this machine. */
  host: z.string().default('127.0.0.1'),
  /** 0 picks a free port (logged at start). */
  port: z.number().int().min(0).max(65535).default(9464),
  /** Allow POST /pause, /resume, /reload, /adaptation/reset. */
  control: z.boolean().default(true),
});

export const AgentConfigSchema = z.strictObject({
  source: SourceSchema.prefault({}),
  model: ModelSchema.prefault({}),
  batch: BatchSchema.prefault({}),
  adaptation: AdaptationSchema.prefault({}),
  storage: StorageSchema.prefault({}),
  telemetry: TelemetrySchema.prefault({}),
  http: HttpSchema.prefault({}),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') }).prefault({}),
  /** Stop after this many frames were processed (0 = run until the source ends or a signal). */
  maxFrames: z.number().int().min(0).default(0),
});

export type AgentConfig = z.infer<typeof AgentConfigSchema>;

// What `set-options` (MQTT or POST /options) may change while the agent runs is defined once, in
// sdk/telemetry (the fleet's command schema): adapter options (sdk/adapt names) rebuild the adapter
// between batches, keeping its state when the option set still fits it; the batching, adaptation
// and shift keys apply from the next batch. Anything else needs a restart (edit agent.yaml).
export { ADAPTER_OPTION_KEYS, parseSetOptions, SetOptionsSchema, type SetOptions } from '../sdk/telemetry/index.ts';
export type AgentConfigInput = z.input<typeof AgentConfigSchema>;
export type SourceConfig = AgentConfig['source'];

/** How to fix the common mistakes, by key; the error message quotes this. */
const FIX: Record<string, string> = {
  'source.uri': "give a video file, an rtsp:// URL, a camera (/dev/videoN, or its index N: 0 for /dev/video0), or a GStreamer pipeline ending in 'appsink'",
  'source.kind': 'use auto, file, rtsp, v4l2 or gstreamer',
  'source.mode': "use 'latest' (cameras: drop stale frames) or 'all' (files: every frame)",
  'model.providers': 'list some of tensorrt, cuda, webgpu, cpu in order of preference, e.g. [cuda, cpu]',
  'batch.size': 'use a whole number from 1 to 1024',
  'http.port': 'use 0 (any free port) or 1-65535',
  'log.level': 'use trace, debug, info, warn, error, fatal or silent',
};

function fixFor(path: string): string {
  for (let p = path; p; p = p.slice(0, Math.max(0, p.lastIndexOf('.')))) {
    if (FIX[p]) return FIX[p]!;
    if (!p.includes('.')) break;
  }
  return 'see docs/JETSON.md (agent.yaml) or device/config.ts for the allowed keys and values';
}

/** The object schema inside defaults, prefaults and optionals (a config section), if any. */
function objectIn(schema: unknown): z.ZodObject | undefined {
  for (let t = schema; t; t = (t as { _zod: { def: { innerType?: unknown } } })._zod.def.innerType) {
    if (t instanceof z.ZodObject) return t;
  }
  return undefined;
}

/**
 * The keys a config section allows (for "unknown key" messages), found by walking the schema along
 * the dotted path, so a section added to the schema lists its keys without a list to keep here.
 */
export function sectionKeys(at: string): string[] | undefined {
  let section = objectIn(AgentConfigSchema);
  for (const k of at ? at.split('.') : []) section = objectIn(section?.shape[k]);
  return section ? Object.keys(section.shape) : undefined;
}

/** The value at `path` in the parsed input (for messages about it). */
function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const k of path) v = v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

/** Validates a parsed config object; `source` names the file in messages. */
export function parseAgentConfig(input: unknown, source = 'agent config'): AgentConfig {
  const r = AgentConfigSchema.safeParse(input ?? {});
  if (r.success) {
    // The method and its options are sdk/adapt's to check; checked here too, so that
    // --print-config (the documented config check) catches a bad one, not only the start.
    const a = r.data.adaptation;
    try {
      methodOptions(a.method, a.options as AdaptOptionsInput);
    } catch (e) {
      if (e instanceof TtaqError) throw new TtaqError('CONFIG_INVALID', `${source}: 'adaptation': ${e.message}`, e.details, { cause: e });
      throw e;
    }
    return r.data;
  }
  const issue = r.error.issues[0]!;
  const keys = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') {
    const at = keys.join('.');
    const unknown = issue.keys.map((k) => (at ? `${at}.${k}` : k)).join("', '");
    const allowed = sectionKeys(at);
    throw new TtaqError('CONFIG_INVALID', `${source}: unknown key '${unknown}'; remove it or check its spelling${allowed ? ` (allowed in ${at || 'the top level'}: ${allowed.join(', ')})` : ''}`, { path: [...keys, issue.keys[0]] });
  }
  const at = keys.join('.') || '(root)';
  const msg = issue.message.charAt(0).toLowerCase() + issue.message.slice(1);
  // YAML (and so --set) reads 42, 1e3, true or null as such, not as text: say how to quote one.
  const v = valueAt(input, issue.path);
  const quote = issue.code === 'invalid_type' && issue.expected === 'string' && (typeof v === 'number' || typeof v === 'boolean' || v === null)
    ? ` (${String(v)} was read as a ${v === null ? 'null' : typeof v}; quote it for text: ${keys.at(-1)}: "${String(v)}" in YAML, --set '${at}="${String(v)}"' on the command line)`
    : '';
  throw new TtaqError('CONFIG_INVALID', `${source}: '${at}': ${msg}${quote}; ${fixFor(at)}`, { path: keys });
}

/** Parses `a.b.c=value` overrides (value as YAML: numbers, booleans, lists) into the object. */
export function applyOverrides(base: Record<string, unknown>, sets: readonly string[]): Record<string, unknown> {
  const out = structuredClone(base);
  for (const s of sets) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new TtaqError('CONFIG_INVALID', `--set '${s}' is not key=value; write e.g. --set batch.size=4`);
    const keys = s.slice(0, eq).split('.');
    const value: unknown = parseYaml(s.slice(eq + 1));
    let obj: Record<string, unknown> = out;
    for (const k of keys.slice(0, -1)) {
      const next = obj[k];
      if (next === undefined || next === null) obj[k] = {};
      else if (typeof next !== 'object' || Array.isArray(next)) {
        throw new TtaqError('CONFIG_INVALID', `--set '${s}': '${k}' is not a section; check the key path`);
      }
      obj = obj[k] as Record<string, unknown>;
    }
    obj[keys[keys.length - 1]!] = value;
  }
  return out;
}

/** Reads a YAML (or JSON) config file; a missing path gives the defaults. */
export function readConfigFile(path: string | undefined): Record<string, unknown> {
  if (!path) return {};
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TtaqError('CONFIG_INVALID', `cannot read config ${path}: ${(e as Error).message}; pass an existing file to --config (examples/deploy-to-jetson/agent.yaml is a start)`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new TtaqError('CONFIG_INVALID', `${path} is not valid YAML: ${(e as Error).message.split('\n')[0]}; fix the syntax at that line`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new TtaqError('CONFIG_INVALID', `${path}: the top level must be a mapping (source:, model:, ...), got ${Array.isArray(doc) ? 'a list' : typeof doc}`);
  }
  return doc as Record<string, unknown>;
}

const isUrl = (s: string): boolean => /^[a-z][a-z0-9+.-]*:\/\//i.test(s);

/**
 * Resolves relative file paths against `baseDir`, the working directory (the systemd unit sets
 * WorkingDirectory), the same rule for paths in the file, in --set and in the defaults.
 */
export function resolvePaths(c: AgentConfig, baseDir: string): AgentConfig {
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  const kind = detectSourceKind(c.source);
  return {
    ...c,
    source: { ...c.source, uri: kind === 'file' ? abs(c.source.uri.replace(/^file:\/\//i, '')) : c.source.uri },
    model: {
      ...c.model,
      path: abs(c.model.path),
      manifest: c.model.manifest ? abs(c.model.manifest) : undefined,
      tensorrt: { ...c.model.tensorrt, cacheDir: abs(c.model.tensorrt.cacheDir) },
      cacheDir: abs(c.model.cacheDir),
    },
    storage: { ...c.storage, path: abs(c.storage.path) },
    telemetry: {
      ...c.telemetry,
      outbox: c.telemetry.outbox ? abs(c.telemetry.outbox) : undefined,
      tls: c.telemetry.tls
        ? {
            ...c.telemetry.tls,
            ...(c.telemetry.tls.ca ? { ca: abs(c.telemetry.tls.ca) } : {}),
            ...(c.telemetry.tls.cert ? { cert: abs(c.telemetry.tls.cert) } : {}),
            ...(c.telemetry.tls.key ? { key: abs(c.telemetry.tls.key) } : {}),
          }
        : undefined,
    },
  };
}

/** Loads, overrides, validates and resolves: what `ttaq agent` runs with. */
export function loadAgentConfig(path: string | undefined, sets: readonly string[] = [], cwd = process.cwd()): AgentConfig {
  const raw = applyOverrides(readConfigFile(path), sets);
  return resolvePaths(parseAgentConfig(raw, path ?? 'agent config'), cwd);
}

export type SourceKind = 'file' | 'rtsp' | 'v4l2' | 'gstreamer';

/** Decides how to open a source from its form when `kind` is `auto`. */
export function detectSourceKind(s: Pick<SourceConfig, 'uri' | 'kind'>): SourceKind {
  if (s.kind !== 'auto') return s.kind;
  const u = s.uri.trim();
  if (/\bappsink\b/.test(u) || / ! /.test(u)) return 'gstreamer';
  if (/^\/dev\/video\d+$/.test(u) || /^\d+$/.test(u)) return 'v4l2';
  if (isUrl(u) && !/^file:\/\//i.test(u)) return 'rtsp';
  return 'file';
}
