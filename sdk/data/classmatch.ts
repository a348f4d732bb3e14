// Which label a class folder stands for. A model numbers its classes in its manifest's label order;
// an image folder names its classes by sub-folder. Folders named after the labels map by name (a
// '/' in a label is written as '_', as writeImageFolder does), folders named 0, 1, ... by number; a
// set with exactly as many folders as labels but other names (ImageNet's WordNet ids against
// readable names) is taken in sorted order, the usual convention; anything else cannot be matched,
// and labels read from it would score the model against the wrong classes.

/** The folder name a label is written under. */
export const labelFolderName = (label: string): string => label.replace(/[\\/]/g, '_');

export type ClassMatch =
  /** Every folder is a label: `classes` is the label list as folder names (index = label). */
  | { readonly kind: 'names'; readonly classes: readonly string[] }
  /** Other names, as many as labels: sorted folder i is label i. */
  | { readonly kind: 'order' }
  | { readonly kind: 'mismatch'; readonly reason: string };

const list = (xs: readonly string[]): string => `${xs.slice(0, 4).join(', ')}${xs.length > 4 ? `, ... (${xs.length})` : ''}`;

export function matchClassFolders(folders: readonly string[], labels: readonly string[]): ClassMatch {
  const classes = labels.map(labelFolderName);
  if (folders.length > 0 && folders.every((f) => classes.includes(f))) return { kind: 'names', classes };
  // folders named by label index ('0', '1', ...; ttaq corrupt writes unnamed classes so): by number,
  // not in sorted order, where '10' comes before '2'
  const indices = labels.map((_, i) => String(i));
  if (folders.length > 0 && folders.every((f) => indices.includes(f))) return { kind: 'names', classes: indices };
  if (folders.length === labels.length) return { kind: 'order' };
  const strangers = folders.filter((f) => !classes.includes(f));
  return {
    kind: 'mismatch',
    reason: `its class folders (${list(folders)}) are not the model's labels (${list(classes)}): ${list(strangers)} ${strangers.length === 1 ? 'is' : 'are'} not among them, and there are ${folders.length} folders for ${labels.length} labels`,
  };
}
