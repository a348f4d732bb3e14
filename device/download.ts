// Model downloads for `reload` by URL: the manifest first (`<model>.manifest.json` beside the model
// URL, the same rule as on disk), then the model, streamed into the cache folder while its SHA-256
// is computed; the file is kept under its hash only when the hash is the manifest's (and the
// command's, when it names one). Anything wrong leaves the running model alone: nothing is renamed
// into place before it is checked. A model already in the cache under its hash is not fetched again.
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TtaqError } from '../sdk/errors/index.ts';
import { manifestPathFor, parseManifest, sha256Hex, type Manifest } from '../sdk/manifest/index.ts';

export interface DownloadOptions {
  /** Where downloaded models are kept, named by their SHA-256. */
  readonly cacheDir: string;
  /** Allow plain http:// (tests, a closed network); https:// otherwise. */
  readonly allowHttp?: boolean;
  /** Largest model accepted (bytes). */
  readonly maxBytes?: number;
  /** Whole download (manifest and model). */
  readonly timeoutMs?: number;
}

export interface DownloadedModel {
  readonly path: string;
  readonly manifest: string;
  readonly sha256: string;
  /** True when the model was in the cache already. */
  readonly cached: boolean;
}

const fail = (msg: string): TtaqError => new TtaqError('MODEL_DOWNLOAD_FAILED', msg);

/** The URL of a model's manifest: the model URL's path with `.onnx` replaced (query kept). */
export function manifestUrlFor(modelUrl: string): string {
  const u = new URL(modelUrl);
  u.pathname = manifestPathFor(u.pathname);
  return u.toString();
}

function checkUrl(url: string, allowHttp: boolean): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TtaqError('CONFIG_INVALID', `reload url '${url}' is not a URL; send https://host/path/model.onnx`);
  }
  if (u.protocol === 'https:' || (u.protocol === 'http:' && allowHttp)) return u;
  throw new TtaqError('CONFIG_INVALID', `reload url '${u.protocol}//${u.host}${u.pathname}': only https:// downloads are allowed${u.protocol === 'http:' ? ' (set model.allowHttp: true for a closed network)' : ''}`);
}

/** Downloads (or finds in the cache) a model and its manifest; throws MODEL_DOWNLOAD_FAILED or CONFIG_INVALID. */
export async function downloadModel(url: string, expectSha: string | undefined, o: DownloadOptions): Promise<DownloadedModel> {
  const u = checkUrl(url, o.allowHttp ?? false);
  const shown = `${u.protocol}//${u.host}${u.pathname}`;
  const maxBytes = o.maxBytes ?? 1024 * 1024 * 1024;
  const signal = AbortSignal.timeout(o.timeoutMs ?? 120_000);
  mkdirSync(o.cacheDir, { recursive: true });

  // 1. The manifest: small, read whole, validated.
  const murl = manifestUrlFor(url);
  let manifest: Manifest;
  let manifestText: string;
  try {
    const r = await fetch(murl, { signal, redirect: 'follow' });
    if (!r.ok) throw fail(`manifest ${murl.split('?')[0]}: HTTP ${r.status}; put <model>.manifest.json beside the model on the server`);
    manifestText = await r.text();
    if (manifestText.length > 4 * 1024 * 1024) throw fail(`manifest ${murl.split('?')[0]} is ${manifestText.length} bytes; a manifest is a few KB`);
    manifest = parseManifest(JSON.parse(manifestText), `manifest ${murl.split('?')[0]}`);
  } catch (e) {
    if (e instanceof TtaqError) throw e;
    throw fail(`cannot get the manifest ${murl.split('?')[0]}: ${(e as Error).message}; check the URL and the network (the running model stays)`);
  }
  const sha = manifest.sha256;
  if (expectSha && expectSha !== sha) {
    throw new TtaqError('STATE_MISMATCH', `reload ${shown}: its manifest says SHA-256 ${sha.slice(0, 12)}…, the command expected ${expectSha.slice(0, 12)}…; send the hash of the model you published`);
  }
  const path = join(o.cacheDir, `${sha}.onnx`);
  const mpath = join(o.cacheDir, `${sha}.manifest.json`);
  if (existsSync(path) && sha256Hex(readFileSync(path)) === sha) {
    writeFileSync(mpath, manifestText);
    return { path, manifest: mpath, sha256: sha, cached: true };
  }

  // 2. The model, streamed to a part file and hashed on the way.
  const part = join(o.cacheDir, `.${sha}.${process.pid}.part`);
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    const r = await fetch(u, { signal, redirect: 'follow' });
    if (!r.ok || !r.body) throw fail(`model ${shown}: HTTP ${r.status}; check the URL (the running model stays)`);
    const declared = Number(r.headers.get('content-length') ?? NaN);
    if (declared > maxBytes) throw fail(`model ${shown} is ${declared} bytes, over the ${maxBytes}-byte limit (model.downloadMaxMb)`);
    const out = createWriteStream(part);
    try {
      for await (const chunk of r.body as AsyncIterable<Uint8Array>) {
        bytes += chunk.byteLength;
        if (bytes > maxBytes) throw fail(`model ${shown} is over the ${maxBytes}-byte limit (model.downloadMaxMb)`);
        hash.update(chunk);
        if (!out.write(chunk)) await new Promise<void>((res) => out.once('drain', () => res()));
      }
    } finally {
      await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())));
    }
  } catch (e) {
    rmSync(part, { force: true });
    if (e instanceof TtaqError) throw e;
    throw fail(`cannot download ${shown}: ${(e as Error).message}; check the URL and the network (the running model stays)`);
  }
  const got = hash.digest('hex');
  if (got !== sha) {
    rmSync(part, { force: true });
    throw new TtaqError('STATE_MISMATCH', `model ${shown} (${bytes} bytes) has SHA-256 ${got.slice(0, 12)}…, its manifest says ${sha.slice(0, 12)}…; the download is corrupt or the manifest is not this model's (the running model stays)`);
  }
  writeFileSync(mpath, manifestText);
  renameSync(part, path);
  return { path, manifest: mpath, sha256: sha, cached: false };
}
