// The models that ship in this package's models/ folder, by absolute path: a default that names
// 'models/resnet20-fmnist.onnx' relative to the working directory finds nothing once ttaq runs
// from anywhere but a checkout's root (an installed package, a service's working directory).
import { fileURLToPath } from 'node:url';

/** The bundled models (each with its <name>.manifest.json beside it). */
export type BundledModel = 'resnet20-fmnist' | 'mobilenet-fmnist';

/** The absolute path of a bundled model in this package. */
export const bundledModelPath = (name: BundledModel): string => fileURLToPath(new URL(`../../models/${name}.onnx`, import.meta.url));

/** The model every command runs when none is named: the bundled ResNet-20. */
export const DEFAULT_MODEL_PATH = bundledModelPath('resnet20-fmnist');
