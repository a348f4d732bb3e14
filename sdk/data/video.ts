// Labelled video: an MP4 (H.264, fourcc avc1, through OpenCV's FFmpeg backend; mp4v as fallback)
// plus a JSON sidecar `<video without extension>.labels.json` with each frame's label, domain and
// severity. The camera-like source of the device agent and of stream tests.
//
// Frames are written at `size` x `size`: an integer upscale uses nearest neighbour, so the area
// downscale in preprocessing gives back the dataset image up to codec loss; other sizes use
// bilinear interpolation. Gray images are written as gray-valued BGR.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { TtaqError } from '../errors/index.ts';
import type { ProgressFn } from '../progress/index.ts';
import { cv, frameToImage, imageToBgrMat } from './cv.ts';
import { imageAt, packLabels, type Dataset } from './dataset.ts';

export const VideoLabelsSchema = z.object({
  format: z.literal('ttaq-video-labels/1'),
  video: z.string(),
  fps: z.number().positive(),
  /** Frame size in the video. */
  frameHeight: z.number().int().positive(),
  frameWidth: z.number().int().positive(),
  /** Size and channels of the dataset images the frames were made from. */
  height: z.number().int().positive(),
  width: z.number().int().positive(),
  channels: z.union([z.literal(1), z.literal(3)]),
  frames: z.number().int().nonnegative(),
  labels: z.array(z.number().int()),
  classes: z.array(z.string()).optional(),
  /** Domain names; `domain[t]` indexes this list. */
  domainNames: z.array(z.string()).default([]),
  domain: z.array(z.number().int().nonnegative()).optional(),
  severity: z.array(z.number().int().min(0).max(5)).optional(),
  /** The stream spec the video was made from, when any. */
  stream: z.unknown().optional(),
});
export type VideoLabels = z.infer<typeof VideoLabelsSchema>;

/** The sidecar path for a video: `out.mp4` -> `out.labels.json`. */
export const sidecarPathFor = (videoPath: string): string => videoPath.replace(/\.[^./]+$/, '') + '.labels.json';

export interface WriteVideoOptions {
  readonly fps?: number;
  /** Square frame side in pixels (default 112). */
  readonly size?: number;
  readonly domainNames?: readonly string[];
  readonly domain?: ArrayLike<number>;
  readonly severity?: ArrayLike<number>;
  readonly stream?: unknown;
  readonly onProgress?: ProgressFn;
}

/** Writes the images of `d` as frames of an MP4 and its labels sidecar; returns both paths. */
export async function writeLabelledVideo(path: string, d: Dataset, opts: WriteVideoOptions = {}): Promise<{ video: string; labels: string; fourcc: string }> {
  const c = cv();
  const fps = opts.fps ?? 30;
  const size = opts.size ?? 112;
  if (!Number.isInteger(size) || size < 8 || size % 2 !== 0) {
    throw new TtaqError('DATA_BAD_SPEC', `video frame size ${size} must be an even integer >= 8 (H.264 with 4:2:0 chroma needs even sides); use e.g. 112`);
  }
  const interp = size % d.height === 0 && size % d.width === 0 ? c.INTER_NEAREST : c.INTER_LINEAR;
  let writer: InstanceType<typeof c.VideoWriter> | null = null;
  let fourcc = '';
  for (const f of ['avc1', 'mp4v']) {
    try {
      writer = new c.VideoWriter(path, c.VideoWriter.fourcc(f), fps, new c.Size(size, size), true);
      fourcc = f;
      break;
    } catch {
      writer = null;
    }
  }
  if (!writer) throw new TtaqError('DATA_BAD_FORMAT', `cannot open a video writer for ${path} (tried avc1 and mp4v); check that OpenCV was built with FFmpeg and the folder is writable`);
  try {
    for (let i = 0; i < d.count; i++) {
      const m = imageToBgrMat(imageAt(d, i), d.height, d.width, d.channels).resize(new c.Size(size, size), 0, 0, interp);
      writer.write(m);
      if (opts.onProgress && (i % 100 === 99 || i === d.count - 1)) opts.onProgress({ stage: 'encode video', done: i + 1, total: d.count });
    }
  } finally {
    writer.release();
  }
  const labels: VideoLabels = {
    format: 'ttaq-video-labels/1',
    video: path.split('/').pop()!,
    fps,
    frameHeight: size,
    frameWidth: size,
    height: d.height,
    width: d.width,
    channels: d.channels as 1 | 3,
    frames: d.count,
    labels: Array.from(d.labels),
    ...(d.classes ? { classes: [...d.classes] } : {}),
    domainNames: [...(opts.domainNames ?? [])],
    ...(opts.domain ? { domain: Array.from(opts.domain) } : {}),
    ...(opts.severity ? { severity: Array.from(opts.severity) } : {}),
    ...(opts.stream !== undefined ? { stream: opts.stream } : {}),
  };
  const sidecar = sidecarPathFor(path);
  await writeFile(sidecar, JSON.stringify(labels) + '\n');
  return { video: path, labels: sidecar, fourcc };
}

/** Reads a video's labels sidecar (`out.labels.json`, or `out.mp4.labels.json`). */
export async function readVideoLabels(videoPath: string): Promise<VideoLabels> {
  const candidates = [sidecarPathFor(videoPath), videoPath + '.labels.json'];
  const path = candidates.find((p) => existsSync(p));
  if (!path) throw new TtaqError('DATA_NOT_FOUND', `no labels sidecar for ${videoPath} (looked for ${candidates.join(' and ')}); write one with ttaq corrupt --video`);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new TtaqError('DATA_BAD_FORMAT', `${path} is not valid JSON: ${(e as Error).message}`);
  }
  const r = VideoLabelsSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new TtaqError('DATA_BAD_FORMAT', `${path}: '${issue.path.join('.') || '(root)'}' ${issue.message}`);
  }
  if (r.data.labels.length !== r.data.frames) throw new TtaqError('DATA_BAD_FORMAT', `${path}: ${r.data.frames} frames but ${r.data.labels.length} labels`);
  return r.data;
}

export interface ReadVideoOptions {
  /** Output image size (default: the sidecar's dataset size, else the frame size). */
  readonly height?: number;
  readonly width?: number;
  /** Output channels (default: the sidecar's, else 3). */
  readonly channels?: 1 | 3;
  /** Read at most this many frames. */
  readonly limit?: number;
}

/**
 * Reads a labelled video back into the dataset layout (frames area-resized to the dataset size),
 * with the sidecar. A frame count that disagrees with the sidecar is an error.
 */
export async function readLabelledVideo(path: string, opts: ReadVideoOptions = {}): Promise<{ data: Dataset; labels: VideoLabels }> {
  const meta = await readVideoLabels(path);
  const c = cv();
  if (!existsSync(path)) throw new TtaqError('DATA_NOT_FOUND', `video ${path} does not exist`);
  const cap = new c.VideoCapture(path);
  const H = opts.height ?? meta.height;
  const W = opts.width ?? meta.width;
  const C = opts.channels ?? meta.channels;
  const per = H * W * C;
  const want = Math.min(meta.frames, opts.limit ?? Infinity);
  const images = new Uint8Array(want * per);
  let n = 0;
  try {
    for (;;) {
      const f = cap.read();
      if (f.empty) break;
      if (n >= want) {
        if (opts.limit !== undefined) break;
        n++;
        continue;
      }
      const m = f.rows === H && f.cols === W ? f : f.resize(new c.Size(W, H), 0, 0, c.INTER_AREA);
      images.set(frameToImage(m, C).data, n * per);
      n++;
    }
  } finally {
    cap.release();
  }
  if (opts.limit === undefined ? n !== meta.frames : n < want) {
    throw new TtaqError('DATA_BAD_FORMAT', `${path}: decoded ${n} frames, the sidecar lists ${meta.frames}; the video or its sidecar is stale, regenerate both`);
  }
  const data: Dataset = { count: want, height: H, width: W, channels: C, images, labels: packLabels(meta.labels.slice(0, want)), ...(meta.classes ? { classes: meta.classes } : {}) };
  return { data, labels: meta };
}
