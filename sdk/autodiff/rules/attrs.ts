// Attribute readers shared by the rules: typed access with defaults, no silent coercion.
import { TtaqError } from '../../errors/index.ts';
import { toNumbers } from '../../onnx/tensor.ts';
import type { Node } from '../../onnx/types.ts';
import type { RuleContext } from './types.ts';

const bad = (node: Node, name: string, want: string): TtaqError =>
  new TtaqError('AUTODIFF_BAD_REQUEST', `attribute '${name}' of node '${node.name}' (${node.opType}) should be ${want}; fix the forward model`, { node: node.name, attribute: name });

export function attrInt(node: Node, name: string, def: number): number {
  const a = node.attrs[name];
  if (!a) return def;
  if (a.kind !== 'int') throw bad(node, name, 'an int');
  return a.value;
}

export function attrFloat(node: Node, name: string, def: number): number {
  const a = node.attrs[name];
  if (!a) return def;
  if (a.kind !== 'float') throw bad(node, name, 'a float');
  return a.value;
}

export function attrInts(node: Node, name: string): readonly number[] | undefined {
  const a = node.attrs[name];
  if (!a) return undefined;
  if (a.kind !== 'ints') throw bad(node, name, 'a list of ints');
  return a.value;
}

export function attrString(node: Node, name: string, def: string): string {
  const a = node.attrs[name];
  if (!a) return def;
  if (a.kind !== 'string') throw bad(node, name, 'a string');
  return a.value;
}

/** Values of a constant int input (axes, pads, starts...), or undefined when the input is omitted. */
export function constInts(ctx: RuleContext, index: number, what: string): number[] | undefined {
  const name = ctx.node.inputs[index];
  if (name === undefined || name === '') return undefined;
  const t = ctx.constant(name);
  if (!t) ctx.fail(`its ${what} input '${name}' must be a constant (initializer or Constant node) for differentiation`);
  return Array.from(toNumbers(t), (v) => Number(v));
}

/** Values of a constant float input, or undefined when omitted. */
export function constFloats(ctx: RuleContext, index: number, what: string): number[] | undefined {
  return constInts(ctx, index, what);
}

/** Normalises possibly negative axes against a rank. */
export const normAxes = (axes: readonly number[], rank: number): number[] => axes.map((a) => (a < 0 ? a + rank : a));

/** Axes of a Reduce* node, from the attribute (older opsets) or the input (ReduceSum 13+, others 18+). */
export function reduceAxes(ctx: RuleContext): number[] | undefined {
  const fromAttr = attrInts(ctx.node, 'axes');
  if (fromAttr) return [...fromAttr];
  return constInts(ctx, 1, 'axes');
}
