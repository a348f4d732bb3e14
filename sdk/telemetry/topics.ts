// The versioned topic scheme, in one place. Every topic is `ttaq/v1/<device>/<channel>`:
//
//   ttaq/v1/<device>/status               retained: online | stopped | offline (the Last Will)
//   ttaq/v1/<device>/telemetry            periodic JSON, with a per-device sequence number
//   ttaq/v1/<device>/events               shift detected, reset, checkpoint, error, model reload
//   ttaq/v1/<device>/cmd/<name>           commands from operators
//   ttaq/v1/<device>/cmd/<name>/reply     the device's reply to one command
//
// A new, incompatible scheme gets a new version segment (`ttaq/v2/...`), so old and new agents can
// share one broker while a fleet is upgraded.
import { TtaqError } from '../errors/index.ts';

export const TOPIC_ROOT = 'ttaq';
export const TOPIC_VERSION = 'v1';
const PREFIX = `${TOPIC_ROOT}/${TOPIC_VERSION}`;

/** Device ids and command names: letters, digits, `.`, `_`, `-`; 1-64 characters. */
const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

export function checkDeviceId(device: string, where = 'device id'): string {
  if (!NAME_RE.test(device)) {
    throw new TtaqError(
      'TELEMETRY_BAD_TOPIC',
      `${where} '${device}' is not usable in an MQTT topic: use 1-64 letters, digits, '.', '_' or '-' (no '/', '+', '#' or spaces)`,
      { device },
    );
  }
  return device;
}

export function checkCommandName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new TtaqError(
      'TELEMETRY_BAD_TOPIC',
      `command name '${name}' is not usable in an MQTT topic: use 1-64 letters, digits, '.', '_' or '-'`,
      { name },
    );
  }
  return name;
}

export const topics = {
  status: (device: string) => `${PREFIX}/${checkDeviceId(device)}/status`,
  telemetry: (device: string) => `${PREFIX}/${checkDeviceId(device)}/telemetry`,
  events: (device: string) => `${PREFIX}/${checkDeviceId(device)}/events`,
  command: (device: string, name: string) => `${PREFIX}/${checkDeviceId(device)}/cmd/${checkCommandName(name)}`,
  reply: (device: string, name: string) => `${PREFIX}/${checkDeviceId(device)}/cmd/${checkCommandName(name)}/reply`,
  /** What a device subscribes to: every command addressed to it. */
  deviceCommands: (device: string) => `${PREFIX}/${checkDeviceId(device)}/cmd/+`,
} as const;

/** The filters a receiver subscribes to (all devices). */
export const receiverFilters = [
  `${PREFIX}/+/status`,
  `${PREFIX}/+/telemetry`,
  `${PREFIX}/+/events`,
  `${PREFIX}/+/cmd/+`,
  `${PREFIX}/+/cmd/+/reply`,
] as const;

/** MQTT 5 shared subscription: `$share/<group>/<filter>`; the broker splits messages over the group. */
export function shared(group: string | undefined, filter: string): string {
  if (group === undefined) return filter;
  if (!NAME_RE.test(group)) {
    throw new TtaqError('TELEMETRY_BAD_TOPIC', `share group '${group}' is not usable: use 1-64 letters, digits, '.', '_' or '-'`);
  }
  return `$share/${group}/${filter}`;
}

export type ParsedTopic =
  | { kind: 'status' | 'telemetry' | 'events'; device: string }
  | { kind: 'command' | 'reply'; device: string; command: string };

/** Parses a `ttaq/v1/...` topic; null for anything else (other versions included). */
export function parseTopic(topic: string): ParsedTopic | null {
  const p = topic.split('/');
  if (p[0] !== TOPIC_ROOT || p[1] !== TOPIC_VERSION) return null;
  const device = p[2];
  if (device === undefined || !NAME_RE.test(device)) return null;
  if (p.length === 4 && (p[3] === 'status' || p[3] === 'telemetry' || p[3] === 'events')) {
    return { kind: p[3], device };
  }
  if (p[3] === 'cmd' && p[4] !== undefined && NAME_RE.test(p[4])) {
    if (p.length === 5) return { kind: 'command', device, command: p[4] };
    if (p.length === 6 && p[5] === 'reply') return { kind: 'reply', device, command: p[4] };
  }
  return null;
}
