// The manifest's zod schema and the types inferred from it, apart from the functions that read and
// write manifests so that modules describing a model can take the types without importing those.
import { z } from 'zod';

export const PreprocessSchema = z.object({
  /** Network input size. */
  height: z.number().int().positive(),
  width: z.number().int().positive(),
  /** 1 = grayscale, 3 = RGB (channel order R, G, B). */
  channels: z.union([z.literal(1), z.literal(3)]),
  /** How a frame of another size is brought to height x width. */
  resize: z.enum(['stretch', 'center-crop', 'letterbox']).default('stretch'),
  /** Applied after scaling pixels to [0, 1]: (x - mean[c]) / std[c]. */
  mean: z.array(z.number()).min(1),
  std: z.array(z.number().positive()).min(1),
  layout: z.literal('NCHW').default('NCHW'),
});
export type Preprocess = z.infer<typeof PreprocessSchema>;

export const LayerQuantSchema = z.object({
  node: z.string(),
  weightBits: z.number().int().optional(),
  activationBits: z.number().int().optional(),
});

export const ManifestSchema = z.object({
  format: z.literal('ttaq-manifest/1'),
  name: z.string(),
  /** Model file name, relative to the manifest. */
  model: z.string(),
  /** SHA-256 of the model file (hex). */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  input: z.object({ name: z.string(), shape: z.array(z.number().int()) }),
  output: z.object({ name: z.string() }),
  labels: z.array(z.string()).min(2),
  preprocess: PreprocessSchema,
  /** The BatchNormalization nodes test-time adaptation may update. */
  adaptation: z.object({ bnNodes: z.array(z.string()) }).default({ bnNodes: [] }),
  /** Present on quantized models. */
  quantization: z
    .object({
      weightBits: z.number().int(),
      activationBits: z.number().int(),
      method: z.string(),
      variant: z.enum(['true-width', 'int8-container']),
      layers: z.array(LayerQuantSchema).default([]),
      calibration: z.record(z.string(), z.unknown()).default({}),
    })
    .optional(),
  /** How the model was made: the exact command, metrics, dataset. */
  provenance: z
    .object({
      command: z.string().optional(),
      dataset: z.string().optional(),
      metrics: z.record(z.string(), z.number()).default({}),
      createdAt: z.string().optional(),
    })
    .default({ metrics: {} }),
});
export type Manifest = z.infer<typeof ManifestSchema>;
