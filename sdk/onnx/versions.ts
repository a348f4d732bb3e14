// IR-version and opset limits of the onnxruntime ttaq ships with, and opset helpers. The limits
// were measured against onnxruntime-node 1.30: it loads IR versions up to 13 (IR 14 fails in
// Model::Model) and default-domain opsets up to 26 (27 fails ValidateOpsetForDomain); below
// opset 7 it only warns that support is not guaranteed, so ttaq refuses those.
import { TtaqError } from '../errors/index.ts';
import type { Model } from './types.ts';

export const MIN_IR_VERSION = 3;
export const MAX_IR_VERSION = 13;
export const MIN_OPSET = 7;
export const MAX_OPSET = 26;

const isDefaultDomain = (domain: string): boolean => domain === '' || domain === 'ai.onnx';

/** The default-domain (ai.onnx) opset a model imports, or undefined when it imports none. */
export function getOpset(model: Model): number | undefined {
  return model.opsetImports.find((o) => isDefaultDomain(o.domain))?.version;
}

/**
 * A copy of the model importing `version` of the default domain. Only the stamp changes: the
 * caller is responsible for the nodes meaning the same at that opset.
 */
export function setOpset(model: Model, version: number): Model {
  const rest = model.opsetImports.filter((o) => !isDefaultDomain(o.domain));
  return { ...model, opsetImports: [{ domain: '', version }, ...rest] };
}

/** The opset imported for `domain` ('' and 'ai.onnx' are the same domain). */
export function getDomainOpset(model: Model, domain: string): number | undefined {
  if (isDefaultDomain(domain)) return getOpset(model);
  return model.opsetImports.find((o) => o.domain === domain)?.version;
}

/** Throws ONNX_UNSUPPORTED_IR_VERSION / ONNX_UNSUPPORTED_OPSET when onnxruntime cannot run the model. */
export function checkModelVersions(model: Model, source = 'model'): void {
  const ir = model.irVersion;
  if (!(ir >= MIN_IR_VERSION && ir <= MAX_IR_VERSION)) {
    throw new TtaqError(
      'ONNX_UNSUPPORTED_IR_VERSION',
      `${source} has IR version ${ir}; ttaq (onnxruntime 1.30) runs IR versions ${MIN_IR_VERSION} to ${MAX_IR_VERSION}. ` +
        (ir > MAX_IR_VERSION ? 'Export with an older onnx package or lower ir_version' : 'Upgrade it, e.g. with onnx.version_converter'),
      { source, irVersion: ir },
    );
  }
  const opset = getOpset(model);
  const usesDefault = model.graph.nodes.some((n) => isDefaultDomain(n.domain));
  if (opset === undefined) {
    if (!usesDefault) return;
    throw new TtaqError('ONNX_UNSUPPORTED_OPSET', `${source} uses default-domain operators but imports no ai.onnx opset; stamp it with an opset between ${MIN_OPSET} and ${MAX_OPSET}`, { source });
  }
  if (!(opset >= MIN_OPSET && opset <= MAX_OPSET)) {
    throw new TtaqError(
      'ONNX_UNSUPPORTED_OPSET',
      `${source} imports ai.onnx opset ${opset}; ttaq (onnxruntime 1.30) runs opsets ${MIN_OPSET} to ${MAX_OPSET}. ` +
        `Convert it with onnx.version_converter.convert_version(model, ${opset > MAX_OPSET ? MAX_OPSET : 13}) or re-export with that opset`,
      { source, opset },
    );
  }
}
