// Test plumbing for sdk/telemetry: temp dirs, polling, free ports, and a real Mosquitto started on
// a loopback port with a generated config file (killed at the end).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const MOSQUITTO = '/usr/sbin/mosquitto';
export const hasMosquitto = existsSync(MOSQUITTO);
export const MOSQUITTO_SKIP = hasMosquitto ? false : `mosquitto not installed at ${MOSQUITTO} (apt-get install -y mosquitto)`;

export function tempDir(prefix = 'ttaq-tel-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` every 20 ms; throws with `what` after timeoutMs. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface MosquittoOptions {
  readonly dir: string;
  readonly port?: number;
  /** Extra config lines (acl_file, password_file, ...). With none, anonymous access is allowed. */
  readonly extra?: string[];
  /** Listener lines that make the listener a TLS one (cafile, certfile, keyfile, ...). */
  readonly tls?: string[];
}

export interface Mosquitto {
  readonly port: number;
  readonly url: string;
  /** SIGTERM (mosquitto saves its persistence file) and wait for the exit. */
  stop(): Promise<void>;
  /** Start again on the same port with the same config (sessions restored from persistence). */
  start(): Promise<void>;
  log(): string;
}

/** Writes a config with persistence into `dir` and starts mosquitto; resolves once it accepts TCP. */
export async function startMosquitto(o: MosquittoOptions): Promise<Mosquitto> {
  const port = o.port ?? (await freePort());
  const conf = join(o.dir, 'mosquitto.conf');
  const lines = [
    'per_listener_settings false',
    `listener ${port} 127.0.0.1`,
    ...(o.tls ?? []),
    'persistence true',
    `persistence_location ${o.dir}/`,
    'max_queued_messages 100000',
    'max_inflight_messages 64',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    ...(o.extra ?? ['allow_anonymous true']),
  ];
  writeFileSync(conf, lines.join('\n') + '\n');
  let child: ChildProcess | null = null;
  let log = '';
  const start = async () => {
    child = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
    const end = Date.now() + 5000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`mosquitto exited with ${child.exitCode}: ${log}`);
      if (await canConnect(port)) return;
      if (Date.now() > end) throw new Error(`mosquitto did not listen on ${port} within 5 s: ${log}`);
      await sleep(30);
    }
  };
  const stop = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGTERM');
    });
  };
  await start();
  return { port, url: `mqtt://127.0.0.1:${port}`, stop, start, log: () => log };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    import('node:net').then(({ connect }) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
  });
}

/** Creates a mosquitto password file with mosquitto_passwd. */
export function passwordFile(path: string, users: Record<string, string>): void {
  let first = true;
  for (const [u, p] of Object.entries(users)) {
    const r = spawnSync('/usr/bin/mosquitto_passwd', first ? ['-b', '-c', path, u, p] : ['-b', path, u, p], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`mosquitto_passwd failed: ${r.stderr}`);
    first = false;
  }
}

/** A throwaway CA with a broker certificate (for 127.0.0.1) and client certificates (CN = name). */
export function makeCerts(dir: string, clients: string[]): void {
  const run = (args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=ttaq-test-ca', '-days', '2']);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  for (const [name, ext] of [['broker', ['-extfile', 'san.ext']], ...clients.map((c) => [c, []] as const)] as const) {
    run(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name === 'broker' ? '127.0.0.1' : name}`]);
    run(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', ...ext]);
  }
}
