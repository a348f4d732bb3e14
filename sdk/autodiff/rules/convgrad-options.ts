// The names of Conv's backward formulations and the options that choose them, apart from the
// emitters (convgrad.ts), so that the rule context's type can name them without importing those.
export type ConvInputGrad = 'convTranspose' | 'conv' | 'phase';
export type ConvWeightGrad = 'conv' | 'gemm' | 'gemmsplit' | 'shifted' | 'shiftmm' | 'shiftmmb' | 'shiftmmk' | 'onehot' | 'rowgemm';

/** How Conv's backward pass is formulated; 'auto' picks per conv by `chooseConvGrad`. */
export interface ConvGradOptions {
  /** Default 'auto'. */
  readonly input?: ConvInputGrad | 'auto';
  /** Default 'auto'; a function picks per conv. */
  readonly weight?: ConvWeightGrad | 'auto' | ((c: ConvCase) => ConvWeightGrad);
}

export interface ConvCase {
  readonly x: readonly number[];
  readonly w: readonly number[];
  readonly y: readonly number[];
  readonly group: number;
  readonly strides: readonly number[];
  readonly dilations: readonly number[];
  readonly padsBegin: readonly number[];
  readonly padsEnd: readonly number[];
}
