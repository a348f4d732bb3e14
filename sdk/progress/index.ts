// Long SDK jobs (training, quantization, evaluation) report progress through this callback type;
// rendering is the caller's business (tools/lib/progress.ts for the command line).

export interface ProgressEvent {
  readonly stage: string;
  readonly done: number;
  readonly total: number;
  /** Short free text, e.g. the current loss. */
  readonly info?: string;
}

export type ProgressFn = (e: ProgressEvent) => void;

export const noProgress: ProgressFn = () => {};
