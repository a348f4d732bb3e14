// Payload schemas shared by the agent (TelemetryClient) and the receiver: one zod schema per message
// kind, the TypeScript types inferred from them. Every payload is JSON. Telemetry and events carry
// `seq` (per device, starts at 1, +1 per message, shared by both channels, survives restarts through
// the outbox) and `ts` (milliseconds since the epoch, device clock), stamped by the client.
import { z } from 'zod';
import { err, ok, TtaqError, type Result } from '../errors/index.ts';

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits (SHA-256)');
const count = z.number().int().min(0);
const finite = z.number().finite();
/** Milliseconds since the epoch, within what a Date can hold (±8.64e15 ms). */
const epochMs = z.number().int().min(0).max(8.64e15, 'expected milliseconds since the epoch (at most 8.64e15, the largest time a Date holds)');

/**
 * The largest payload taken: well above the largest valid message (telemetry with 4,096-class
 * histograms and priors is about 100 kB) and small enough that a broken or hostile publisher cannot
 * grow the fleet database by megabytes per message.
 */
export const MAX_PAYLOAD_BYTES = 256 * 1024;

export const StampSchema = z.object({
  seq: z.number().int().min(1),
  ts: epochMs,
});

// ---- status (retained) -------------------------------------------------------------------------

export const StatusStateSchema = z.enum(['online', 'stopped', 'offline']);
export type StatusState = z.infer<typeof StatusStateSchema>;

export const StatusSchema = z.object({
  state: StatusStateSchema,
  /** When the state was published; for `offline` (the Last Will) when the dead connection was opened. */
  ts: epochMs,
  /** Random per process start; tells a restart from a reconnect. */
  session: z.string().max(64).optional(),
  agent: z.string().max(64).optional(),
});
export type Status = z.infer<typeof StatusSchema>;

// ---- telemetry ---------------------------------------------------------------------------------

export const TelemetryBodySchema = z.object({
  /** Seconds covered by this report. */
  intervalS: z.number().positive(),
  fps: finite.min(0),
  latencyP50Ms: finite.min(0),
  latencyP95Ms: finite.min(0),
  droppedFrames: count,
  /** Mean prediction entropy over the interval (nats). */
  meanEntropy: finite.min(0),
  /** Mean top-1 softmax probability over the interval. */
  meanConfidence: finite.min(0).max(1),
  /** Predictions per class over the interval. */
  classHistogram: z.array(count).max(4096),
  /** ABL class priors (pi), when the adapter runs ABL. */
  ablPriors: z.array(finite.min(0)).max(4096).optional(),
  /** Mean adaptation loss over the interval; null when no step ran. */
  adaptLoss: finite.nullable(),
  /** Adaptation steps and resets since the agent started. */
  adaptSteps: count,
  resets: count,
  paused: z.boolean().default(false),
  /** Distribution-shift score of the drift detector (0 = like the reference window). */
  driftScore: finite.min(0),
  /** onnxruntime execution provider in use (cpu, cuda, ...). */
  provider: z.string().min(1).max(64),
  /** Resident set size of the agent process. */
  memoryMb: finite.min(0),
  modelSha256: sha256,
  /** Outbox state at the time of the report (filled in by the client). */
  outboxPending: count.optional(),
  outboxDropped: count.optional(),
});
export type TelemetryBody = z.input<typeof TelemetryBodySchema>;
export const TelemetrySchema = TelemetryBodySchema.extend(StampSchema.shape);
export type Telemetry = z.infer<typeof TelemetrySchema>;

// ---- events ------------------------------------------------------------------------------------

const eventCommon = { message: z.string().max(2000).optional() };

export const EventBodySchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('shift_detected'), score: finite, threshold: finite, ...eventCommon }),
  z.object({ type: z.literal('reset'), reason: z.enum(['drift', 'collapse', 'command', 'schedule']), ...eventCommon }),
  z.object({ type: z.literal('checkpoint'), step: count, path: z.string().max(1024).optional(), ...eventCommon }),
  z.object({ type: z.literal('error'), code: z.string().max(64), where: z.string().max(256).optional(), ...eventCommon }),
  z.object({ type: z.literal('model_reload'), sha256, ok: z.boolean(), ...eventCommon }),
  z.object({ type: z.literal('paused'), ...eventCommon }),
  z.object({ type: z.literal('resumed'), ...eventCommon }),
  z.object({ type: z.literal('snapshot'), path: z.string().max(1024).optional(), label: z.string().max(128).optional(), ...eventCommon }),
]);
export type EventBody = z.input<typeof EventBodySchema>;
export const EventSchema = z.intersection(EventBodySchema, StampSchema);
export type TelemetryEvent = z.infer<typeof EventSchema>;
export type EventType = EventBody['type'];

// ---- commands ----------------------------------------------------------------------------------

/** Adapter options (names as in sdk/adapt's AdaptOptions): changing one rebuilds the adapter. */
const adapterOptionShape = {
  loss: z.enum(['none', 'entropy', 'eata', 'abl']).optional(),
  norm: z.enum(['source', 'batch', 'robust']).optional(),
  lr: z.number().positive().max(1).optional(),
  entropyMargin: z.number().positive().max(1).optional(),
  robustAlpha: z.number().min(0).max(1).optional(),
  anchor: z.number().min(0).optional(),
  episodic: z.boolean().optional(),
};
export const ADAPTER_OPTION_KEYS = Object.keys(adapterOptionShape) as (keyof typeof adapterOptionShape)[];

const setOptionsShape = {
  ...adapterOptionShape,
  /** Steps between forced resets (0 = never). */
  resetEvery: z.number().int().min(0).optional(),
  /** Drift score above which the agent resets (0 = never). */
  driftThreshold: z.number().min(0).optional(),
  /** Frames per batch, at most the batch.size the agent started with (the agent checks). */
  batchSize: z.number().int().min(1).optional(),
  /** Longest wait for a batch to fill (batch.maxWaitMs). */
  maxWaitMs: z.number().int().min(0).optional(),
  /** adaptation.every: adapt on every k-th batch (0 = only after a shift). */
  every: z.number().int().min(0).optional(),
  /** adaptation.shift.enabled: run the shift detector. */
  shiftEnabled: z.boolean().optional(),
  /** adaptation.shift.threshold: the drift score that counts as a shift. */
  shiftThreshold: z.number().positive().optional(),
};
/** The keys `set-options` accepts, in the order error messages and help texts list them. */
export const SET_OPTIONS_KEYS = Object.keys(setOptionsShape) as (keyof typeof setOptionsShape)[];

/**
 * What a `set-options` command may change while the agent runs: the one schema for the fleet's MQTT
 * command, the agent's `POST /options` and `ttaq fleet cmd --set`. Anything else needs a restart.
 */
export const SetOptionsSchema = z
  .strictObject(setOptionsShape, {
    error: (iss) => (iss.code === 'unrecognized_keys'
      ? `'${iss.keys.join("', '")}' cannot change while the agent runs; edit agent.yaml and restart (runtime options: ${SET_OPTIONS_KEYS.join(', ')})`
      : undefined),
  })
  .refine((o) => Object.keys(o).length > 0, `at least one option to change is needed (runtime options: ${SET_OPTIONS_KEYS.join(', ')})`);
export type SetOptions = z.infer<typeof SetOptionsSchema>;

/**
 * Validates a set-options patch, throwing CONFIG_INVALID whose message names the first bad key
 * (an unknown one with the list of runtime options). The agent's HTTP and MQTT paths and the fleet
 * tool all call this, so they accept and reject alike with the same words.
 */
export function parseSetOptions(input: unknown): SetOptions {
  const r = SetOptionsSchema.safeParse(input ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  if (issue.path.length === 0) throw new TtaqError('CONFIG_INVALID', `set-options: ${issue.message}`, { issues: r.error.issues });
  throw new TtaqError('CONFIG_INVALID', `set-options: '${issue.path.join('.')}': ${issue.message}; runtime options: ${SET_OPTIONS_KEYS.join(', ')}`, { issues: r.error.issues });
}

/** The argument schema of each built-in command. Custom commands bring their own. */
export const CommandArgSchemas = {
  reset: z.object({ scope: z.enum(['adaptation', 'all']).default('adaptation') }).strict(),
  pause: z.object({}).strict(),
  resume: z.object({}).strict(),
  'set-options': SetOptionsSchema,
  snapshot: z.object({ label: z.string().max(128).optional() }).strict(),
  reload: z
    .object({ sha256, path: z.string().min(1).max(1024).optional(), url: z.url().optional() })
    .strict()
    .refine((o) => (o.path === undefined) !== (o.url === undefined), 'reload needs exactly one of path or url'),
} as const;
export type BuiltinCommand = keyof typeof CommandArgSchemas;
export type CommandArgs<N extends BuiltinCommand> = z.infer<(typeof CommandArgSchemas)[N]>;

export const CommandSchema = z.object({
  /** Chosen by the sender; the reply carries it back. */
  id: z.string().min(1).max(64),
  ts: epochMs.optional(),
  args: z.unknown().default({}),
});
export type Command = z.infer<typeof CommandSchema>;

export const ReplySchema = z.object({
  /** The command's id; null when the command was too malformed to read one. */
  id: z.string().max(64).nullable(),
  ok: z.boolean(),
  ts: epochMs,
  result: z.unknown().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type Reply = z.infer<typeof ReplySchema>;

// ---- helpers -----------------------------------------------------------------------------------

/** One line per zod issue: `path: message`. */
export function describeIssues(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
}

/** Parses JSON text (or bytes) and validates it; the error names the topic and each bad field. */
export function parsePayload<S extends z.ZodType>(schema: S, payload: Buffer | string, where: string): Result<z.infer<S>> {
  const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (bytes > MAX_PAYLOAD_BYTES) {
    return err(new TtaqError('TELEMETRY_BAD_PAYLOAD', `${where}: payload of ${bytes} bytes is over the ${MAX_PAYLOAD_BYTES}-byte limit; send smaller messages (put large data in files and send their path)`));
  }
  let value: unknown;
  try {
    value = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch (e) {
    return err(new TtaqError('TELEMETRY_BAD_PAYLOAD', `${where}: payload is not JSON (${(e as Error).message}); send a UTF-8 JSON object`));
  }
  return validate(schema, value, where);
}

export function validate<S extends z.ZodType>(schema: S, value: unknown, where: string): Result<z.infer<S>> {
  const r = schema.safeParse(value);
  if (r.success) return ok(r.data);
  return err(new TtaqError('TELEMETRY_BAD_PAYLOAD', `${where}: invalid payload: ${describeIssues(r.error)}`, { issues: r.error.issues }));
}
