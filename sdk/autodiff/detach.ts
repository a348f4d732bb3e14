// Stop-gradient marker: an Identity node with a reserved name prefix. Forward semantics are the
// identity (onnxruntime runs it as such); the gradient builder treats its output as a constant.
import type { GraphBuilder } from '../onnx/builder.ts';
import type { Node } from '../onnx/types.ts';

/** Name prefix of the Identity nodes that block gradients. */
export const STOP_GRADIENT_OP_NAME = 'ttaq.stop_gradient';

/** Appends a copy of `name` that carries no gradient; returns the copy's name. */
export function detach(b: GraphBuilder, name: string): string {
  return b.op1('Identity', [name], {}, { name: STOP_GRADIENT_OP_NAME });
}

export const isStopGradient = (n: Node): boolean =>
  n.opType === 'Identity' && n.domain === '' && n.name.startsWith(STOP_GRADIENT_OP_NAME);
