// Whether a dataset's labels are classes of the model that will score it. A label outside
// [0, classes) has no logit: counted as a miss it inflates the error without a word, and the
// label-ordered protocols index their class pools by it. Labels 1..K with no 0 are the usual sign
// of a 1-based numbering (every label then scores as the next class), so the error says so.
import { err, ok, TtaqError, type Result } from '../errors/index.ts';

/** ok when every label is in [0, classes); else the first bad label, its index and the way out. */
export function checkLabelRange(labels: ArrayLike<number>, classes: number, source: string): Result<void> {
  let first = -1;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < labels.length; i++) {
    const v = labels[i]!;
    if (first < 0 && !(v >= 0 && v < classes)) first = i;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (first < 0) return ok(undefined);
  const oneBased = min === 1 && max === classes;
  return err(new TtaqError('DATA_BAD_FORMAT',
    `${source}: label ${labels[first]} at index ${first} is not a class of the model (valid labels 0 to ${classes - 1}: the model has ${classes} classes)${
      oneBased ? `; the labels run 1 to ${classes}, which looks 1-based: subtract 1 from every label` : '; relabel the data to the model\'s classes (its manifest\'s label order) or use a model trained on these classes'}`,
    { source, index: first, label: labels[first], classes }));
}
