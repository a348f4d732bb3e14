// Small array helpers the Conv gradient emitters share.
/** [a, a+1, ..., b-1]. */
export const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);
/** The product of the entries (1 for none). */
export const prod = (xs: readonly number[]): number => xs.reduce((a, b) => a * b, 1);
