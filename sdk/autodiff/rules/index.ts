// The registry of gradient rules: op type (and domain) -> rule. Adding an op is adding a file under
// rules/ and a line below; a missing rule fails graph building with AUTODIFF_NO_RULE.
import type { GradRule } from './types.ts';
import { rule as Abs } from './Abs.ts';
import { rule as Add } from './Add.ts';
import { rule as AveragePool } from './AveragePool.ts';
import { rule as BatchNormalization } from './BatchNormalization.ts';
import { rule as Cast } from './Cast.ts';
import { rule as Ceil } from './Ceil.ts';
import { rule as Clip } from './Clip.ts';
import { rule as Concat } from './Concat.ts';
import { rule as Conv } from './Conv.ts';
import { rule as DequantizeLinear } from './DequantizeLinear.ts';
import { rule as Div } from './Div.ts';
import { rule as Dropout } from './Dropout.ts';
import { rule as Exp } from './Exp.ts';
import { rule as Expand } from './Expand.ts';
import { rule as Flatten } from './Flatten.ts';
import { rule as Floor } from './Floor.ts';
import { rule as Gemm } from './Gemm.ts';
import { rule as GlobalAveragePool } from './GlobalAveragePool.ts';
import { rule as HardSigmoid } from './HardSigmoid.ts';
import { rule as HardSwish } from './HardSwish.ts';
import { rule as Identity } from './Identity.ts';
import { rule as LeakyRelu } from './LeakyRelu.ts';
import { rule as Log } from './Log.ts';
import { rule as LogSoftmax } from './LogSoftmax.ts';
import { rule as MatMul } from './MatMul.ts';
import { rule as MaxPool } from './MaxPool.ts';
import { rule as Mul } from './Mul.ts';
import { rule as Neg } from './Neg.ts';
import { rule as Pad } from './Pad.ts';
import { rule as Pow } from './Pow.ts';
import { rule as QuantizeLinear } from './QuantizeLinear.ts';
import { rule as Reciprocal } from './Reciprocal.ts';
import { rule as ReduceMean } from './ReduceMean.ts';
import { rule as ReduceSum } from './ReduceSum.ts';
import { rule as ReduceSumSquare } from './ReduceSumSquare.ts';
import { rule as Relu } from './Relu.ts';
import { rule as Reshape } from './Reshape.ts';
import { rule as Round } from './Round.ts';
import { rule as Sigmoid } from './Sigmoid.ts';
import { rule as Slice } from './Slice.ts';
import { rule as Softmax } from './Softmax.ts';
import { rule as Split } from './Split.ts';
import { rule as Sqrt } from './Sqrt.ts';
import { rule as Squeeze } from './Squeeze.ts';
import { rule as Sub } from './Sub.ts';
import { rule as Sum } from './Sum.ts';
import { rule as Tanh } from './Tanh.ts';
import { rule as Transpose } from './Transpose.ts';
import { rule as Unsqueeze } from './Unsqueeze.ts';
import { rule as Where } from './Where.ts';

export type { GradRule, RuleContext, RuleOptions } from './types.ts';

const key = (opType: string, domain = ''): string => `${domain === 'ai.onnx' ? '' : domain}::${opType}`;

const registry = new Map<string, GradRule>();

/** Registers (or replaces) the rule for an op; other modules may add rules for their own ops. */
export function registerRule(rule: GradRule): void {
  registry.set(key(rule.opType, rule.domain), rule);
}

export function getRule(opType: string, domain = ''): GradRule | undefined {
  return registry.get(key(opType, domain));
}

/** "Op" or "domain::Op" of every registered rule, sorted. */
export function listRules(): string[] {
  return [...registry.keys()].map((k) => (k.startsWith('::') ? k.slice(2) : k)).sort();
}

for (const r of [
  Abs, Add, AveragePool, BatchNormalization, Cast, Ceil, Clip, Concat, Conv, DequantizeLinear, Div, Dropout, Exp,
  Expand, Flatten, Floor, Gemm, GlobalAveragePool, HardSigmoid, HardSwish, Identity, LeakyRelu, Log, LogSoftmax,
  MatMul, MaxPool, Mul, Neg, Pad, Pow, QuantizeLinear, Reciprocal, ReduceMean, ReduceSum, ReduceSumSquare, Relu, Reshape, Round,
  Sigmoid, Slice, Softmax, Split, Sqrt, Squeeze, Sub, Sum, Tanh, Transpose, Unsqueeze, Where,
]) registerRule(r);
