// The set-up the gradient-step benches share: a bundled CNN in training form for 10 classes, with
// softmax cross-entropy on int64 labels appended, the BN batch statistics as extra outputs, and one
// fixed generated batch (a sine pattern, labels cycling through the classes).
import { buildNet, type Arch, type BuiltNet } from '../nn/index.ts';
import { f32, i64 } from '../onnx/tensor.ts';
import type { Model, Tensor } from '../onnx/types.ts';
import { withSoftmaxCrossEntropy } from './loss.ts';

export interface BenchNet {
  readonly net: BuiltNet;
  /** The net with the loss appended (labels input `labels`). */
  readonly model: Model;
  readonly loss: string;
  /** The parameters to differentiate with respect to (all of the net's). */
  readonly wrt: string[];
  /** Logits and every BN's batch mean and variance. */
  readonly outputs: string[];
  /** One batch of `batch` 1-channel size x size images and their labels. */
  readonly feeds: Record<string, Tensor>;
}

export function benchNet(arch: Arch, batch: number, size: number): BenchNet {
  const net = buildNet({ arch, height: size, width: size, channels: 1, numClasses: 10 }, 'train');
  const { model, loss, labels } = withSoftmaxCrossEntropy(net.model, net.output, { labels: 'int64', classes: 10 });
  const outputs = [net.output, ...net.bns.flatMap((b) => [b.batchMean, b.batchVar])];
  const x = f32([batch, 1, size, size], Array.from({ length: batch * size * size }, (_, i) => Math.sin(i * 0.1)));
  const y = i64([batch], Array.from({ length: batch }, (_, i) => i % 10));
  return { net, model, loss, wrt: net.params.map((p) => p.name), outputs, feeds: { [net.input]: x, [labels]: y } };
}
