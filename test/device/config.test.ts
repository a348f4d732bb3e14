import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { isTtaqError } from '../../sdk/errors/index.ts';
import { applyOverrides, detectSourceKind, loadAgentConfig, parseAgentConfig, sectionKeys } from '../../device/config.ts';
import { DEFAULT_MODEL_PATH } from '../../sdk/bundled/index.ts';
import { backoffMs } from '../../device/capture-child.ts';
import { tmp } from './helpers.ts';

function configError(input: unknown): string {
  try {
    parseAgentConfig(input, 'agent.yaml');
  } catch (e) {
    assert.ok(isTtaqError(e), 'a TtaqError');
    assert.equal(e.code, 'CONFIG_INVALID');
    return e.message;
  }
  assert.fail('expected CONFIG_INVALID');
}

test('defaults run the bundled model on a video file', () => {
  const c = parseAgentConfig({});
  assert.equal(c.model.path, DEFAULT_MODEL_PATH);
  assert.deepEqual(c.model.providers, ['tensorrt', 'cuda', 'cpu']);
  assert.equal(detectSourceKind(c.source), 'file');
  assert.equal(c.batch.size, 8);
  assert.equal(c.adaptation.enabled, true);
  assert.equal(c.http.host, '127.0.0.1');
});

test('a bad value names the key, the problem and the fix', () => {
  const m = configError({ batch: { size: 0 } });
  assert.match(m, /^agent\.yaml: 'batch\.size': too small/);
  assert.match(m, /1 to 1024/);
  assert.match(configError({ model: { providers: ['gpu'] } }), /'model\.providers\.0'.*tensorrt, cuda, webgpu, cpu/);
  assert.match(configError({ source: { mode: 'newest' } }), /'source\.mode'.*'latest'.*'all'/);
  assert.match(configError({ http: { port: 70000 } }), /'http\.port'/);
  assert.match(configError({ source: { reconnect: { factor: 0.5 } } }), /'source\.reconnect\.factor'/);
});

test('an unknown key is named with the keys its section allows', () => {
  const m = configError({ source: { url: 'x.mp4' } });
  assert.match(m, /unknown key 'source\.url'/);
  assert.match(m, /allowed in source: uri, kind/);
  assert.match(configError({ telemetri: {} }), /unknown key 'telemetri'.*telemetry/);
});

test('an unknown key in a nested section lists that section\'s keys too', () => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ model: { tensorrt: { fp17: true } } }, 'model.tensorrt.fp17', /allowed in model\.tensorrt: cacheDir, fp16, int8, workspaceMb\)/],
    [{ model: { cuda: { device: 1 } } }, 'model.cuda.device', /allowed in model\.cuda: deviceId\)/],
    [{ source: { reconnect: { delayMs: 5 } } }, 'source.reconnect.delayMs', /allowed in source\.reconnect: initialDelayMs, maxDelayMs, factor, maxAttempts, stallTimeoutMs\)/],
    [{ storage: { predictionLog: { rows: 5 } } }, 'storage.predictionLog.rows', /allowed in storage\.predictionLog: enabled, maxRows\)/],
    [{ adaptation: { shift: { treshold: 5 } } }, 'adaptation.shift.treshold', /allowed in adaptation\.shift: enabled, threshold,/],
    [{ log: { lvl: 'warn' } }, 'log.lvl', /allowed in log: level\)/],
  ];
  for (const [input, key, allowed] of cases) {
    const m = configError(input);
    assert.ok(m.includes(`unknown key '${key}'`), m);
    assert.match(m, allowed);
  }
  // every section of the schema, found by walking it, has its keys (none is left out of a list)
  const walk = (at: string): string[] => (sectionKeys(at) ?? []).flatMap((k) => {
    const p = at ? `${at}.${k}` : k;
    return sectionKeys(p) ? [p, ...walk(p)] : [];
  });
  const sections = walk('');
  assert.ok(sections.length >= 13, `sections: ${sections.join(', ')}`);
  for (const at of sections) {
    const input: Record<string, unknown> = {};
    let o = input;
    for (const k of at.split('.')) o = (o[k] = {}) as Record<string, unknown>;
    o.zzz = 1;
    assert.match(configError(input), new RegExp(`unknown key '${at.replace(/\./g, '\\.')}\\.zzz'.*\\(allowed in ${at.replace(/\./g, '\\.')}: \\w`));
  }
  assert.equal(sectionKeys('batch.size'), undefined, 'a value is no section');
});

test('--set source.uri=0 means camera 0; other text that YAML reads as a number is told how to quote it', () => {
  const c = loadAgentConfig(undefined, ['source.uri=0']);
  assert.equal(c.source.uri, '0');
  assert.equal(detectSourceKind(c.source), 'v4l2');
  assert.equal(parseAgentConfig({ source: { uri: 2 } }).source.uri, '2', 'uri: 2 in agent.yaml too');
  assert.match(configError({ source: { uri: -1 } }), /'source\.uri'.*its index N: 0 for \/dev\/video0/);
  const m = configError(applyOverrides({}, ['telemetry.deviceId=42']));
  assert.match(m, /'telemetry\.deviceId'.*42 was read as a number; quote it for text: deviceId: "42" in YAML, --set 'telemetry\.deviceId="42"'/);
  assert.equal(loadAgentConfig(undefined, ['telemetry.deviceId="42"']).telemetry.deviceId, '42', 'the quoting the message suggests works');
});

test('YAML files, --set overrides and path resolution', () => {
  const dir = tmp();
  const file = join(dir, 'agent.yaml');
  writeFileSync(file, 'source:\n  uri: rtsp://user:pw@cam/stream\nbatch:\n  size: 4\nstorage:\n  path: st/agent.db\n');
  const c = loadAgentConfig(file, ['batch.maxWaitMs=20', 'adaptation.shift.threshold=2.5', 'model.providers=[cuda, cpu]'], dir);
  assert.equal(c.batch.size, 4);
  assert.equal(c.batch.maxWaitMs, 20);
  assert.equal(c.adaptation.shift.threshold, 2.5);
  assert.deepEqual(c.model.providers, ['cuda', 'cpu']);
  assert.equal(c.storage.path, join(dir, 'st/agent.db'));
  assert.equal(c.source.uri, 'rtsp://user:pw@cam/stream', 'URLs are not paths');
  assert.throws(() => applyOverrides({}, ['batch.size']), /not key=value/);
  writeFileSync(file, 'source: [1, 2]\n');
  assert.throws(() => loadAgentConfig(file), (e: unknown) => isTtaqError(e) && e.code === 'CONFIG_INVALID' && /'source'/.test(e.message));
  writeFileSync(file, 'source:\n  uri: "unterminated\n');
  assert.throws(() => loadAgentConfig(file), /not valid YAML/);
  assert.throws(() => loadAgentConfig(join(dir, 'missing.yaml')), /cannot read config .*missing\.yaml/);
});

test('source kinds are detected from the URI', () => {
  const k = (uri: string) => detectSourceKind({ uri, kind: 'auto' });
  assert.equal(k('/data/clip.mp4'), 'file');
  assert.equal(k('rtsp://10.0.0.5:554/stream1'), 'rtsp');
  assert.equal(k('/dev/video0'), 'v4l2');
  assert.equal(k('1'), 'v4l2');
  assert.equal(k('nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1'), 'gstreamer');
  assert.equal(detectSourceKind({ uri: '/dev/video0', kind: 'gstreamer' }), 'gstreamer');
});

test('reconnect backoff doubles and is capped', () => {
  const r = { initialDelayMs: 100, maxDelayMs: 1000, factor: 2, maxAttempts: 0, stallTimeoutMs: 0 };
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((a) => backoffMs(a, r)), [100, 200, 400, 800, 1000, 1000]);
});

test('the adaptation method and its options are checked with the config, so --print-config catches them', () => {
  assert.throws(() => parseAgentConfig({ adaptation: { method: 'foo' } }), /'adaptation': unknown adaptation method 'foo'/);
  assert.throws(() => parseAgentConfig({ adaptation: { options: { lrr: 1 } } }), /'adaptation': method 'abl:robust': unknown option 'lrr'; valid keys: .*\blr\b/);
  assert.equal(parseAgentConfig({ adaptation: { method: 'tent:robust', options: { lr: 5e-4 } } }).adaptation.method, 'tent:robust');
});
