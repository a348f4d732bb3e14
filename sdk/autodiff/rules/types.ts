// The contract between the gradient-graph builder and one op's rule. A rule reads its forward
// node, the gradients arriving at the node's outputs and static shape facts, and appends the ONNX
// nodes of the node's backward pass to the builder; it returns one gradient name per input.
import type { GraphBuilder } from '../../onnx/builder.ts';
import type { DType, Node, Tensor } from '../../onnx/types.ts';
import type { ConvGradOptions } from './convgrad-options.ts';

/** Choices between equivalent formulations of some rules (GradientRequest.ruleOptions). */
export interface RuleOptions {
  /** Conv's input/weight gradient formulations (default: picked per conv). */
  readonly conv?: ConvGradOptions;
  /**
   * Relu's backward: dy * HardSigmoid(y) as a 0/1 step ('step', default for float32; see
   * rules/Relu.ts), dy * Cast(y > 0) ('mask', the default for other types) or Where(x > 0, dy, 0)
   * ('where', the earliest form).
   */
  readonly relu?: 'step' | 'mask' | 'where';
}

export interface RuleContext {
  /** The forward node being differentiated. */
  readonly node: Node;
  /** Where backward nodes go. Forward values are referenced by their names. */
  readonly b: GraphBuilder;
  /** Default-domain opset of the model (13 or later). */
  readonly opset: number;
  /** Gradient arriving at each output of the node; null where none flows. At least one is set. */
  readonly gy: readonly (string | null)[];
  /** Whether input i needs a gradient (float, depends on a wrt value, leads to the loss). */
  readonly needs: readonly boolean[];
  /** Formulation choices passed with the request ({} by default). */
  readonly options: RuleOptions;
  /** "node 'conv1' (Conv) of model 'net'", for messages. */
  readonly where: string;

  /** Element type of a value. */
  dtype(name: string): DType;
  /** Static dims of a value as seen on the sample run (symbolic dims at the sample size). */
  shape(name: string): readonly number[];
  rank(name: string): number;
  /** Value of an initializer or Constant output, if the value is one. */
  constant(name: string): Tensor | undefined;
  /** The node producing a value, if any. */
  producer(name: string): Node | undefined;
  /** Adds a gradient for a value other than this node's inputs (used by fused patterns). */
  addGrad(value: string, grad: string): void;
  /** Throws AUTODIFF_BAD_REQUEST naming the node and the way out. */
  fail(message: string): never;

  // Helpers that emit dtype-correct, batch-size-agnostic ONNX.
  /** A scalar constant with the element type of `like` (shared between uses). */
  scalar(value: number, like: string): string;
  /** A 1-D int64 constant. */
  ints(values: readonly number[]): string;
  /** Shape(x), emitted once per value. */
  shapeOf(x: string): string;
  /** Sums `g` (shaped like a broadcast result) down to the shape of `target`. */
  unbroadcast(g: string, target: string): string;
  reduceSum(x: string, axes: readonly number[], keepdims: boolean): string;
  reduceMean(x: string, axes: readonly number[], keepdims: boolean): string;
  /** Zeros shaped like `x`. */
  zerosLike(x: string): string;
  /** Cast of a bool mask to the element type of `like`. */
  maskAs(mask: string, like: string): string;
  /**
   * Records that `out` is `value` scaled per channel (axis 1) by the [C] vector `scale` and that
   * nothing but the rule of `out`'s forward value reads it (a BN backward's dx = k1 * u).
   */
  noteChannelScale(out: string, value: string, scale: string): void;
  /** The recorded factors of a gradient `v` made by noteChannelScale, so a linear consumer can
   * apply the scale to something smaller (Conv: its weight) and leave `v` unread. */
  channelScaled(v: string): { readonly value: string; readonly scale: string } | undefined;
}

export interface GradRule {
  readonly opType: string;
  /** '' (default ONNX domain) unless set. */
  readonly domain?: string;
  /** Input indices that never receive a gradient (indices, shapes, axes, quantization zero points). */
  readonly nonDiffInputs?: readonly number[];
  /** Integer outputs that still carry a (straight-through) gradient, e.g. QuantizeLinear's. */
  readonly intOutputsCarryGrad?: boolean;
  /** One gradient name per input, null/undefined where none is produced. */
  backward(ctx: RuleContext): readonly (string | null | undefined)[];
}
