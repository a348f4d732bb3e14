// Which label a class folder stands for. A model numbers its classes in its manifest's label order;
// an image folder names its classes by sub-folder. Tried in turn:
//   - folders named after the labels (a '/' in a label written as '_', as writeImageFolder does);
//   - the same ignoring case, spaces, '_', '/', '\' and '-' ('t-shirt_top' is 'T-shirt/top'):
//     hand-made trees rarely spell labels exactly, and a near miss must not fall back to order;
//   - folders named by number: 0, 1, ... by value (not in text order, where '10' comes before
//     '2'); exactly 1..K, the other common numbering, as 1-based (with a note);
//   - as many folders as labels otherwise (ImageNet's WordNet ids against readable names): in sorted
//     order, numerically when every name is a number, the usual convention; always with a note
//     that shows the mapping, since nothing in the names confirms it.
// Anything else cannot be matched: labels read from it would score the model against the wrong
// classes.

/** The folder name a label is written under. */
export const labelFolderName = (label: string): string => label.replace(/[\\/]/g, '_');

export type ClassMatch =
  /**
   * Every folder is a label: `classes` is the label list as folder names (index = label), to give
   * readImageFolder as its class list; `note` says how numbers were read when not plainly.
   */
  | { readonly kind: 'names'; readonly classes: readonly string[]; readonly note?: string }
  /** Other names, as many as labels: `classes` is the folders in the order taken (folder i is label i). */
  | { readonly kind: 'order'; readonly classes: readonly string[]; readonly note: string }
  | { readonly kind: 'mismatch'; readonly reason: string };

const list = (xs: readonly string[]): string => `${xs.slice(0, 4).join(', ')}${xs.length > 4 ? `, ... (${xs.length})` : ''}`;

/** What a label and a folder name are compared by when not spelt alike. */
const looseKey = (s: string): string => s.toLowerCase().replace(/[\s_/\\-]+/g, '');

/** "a → x, b → y, ...": the folder each label is read from, shortened for long class lists. */
function mapping(classes: readonly string[], labels: readonly string[]): string {
  const pair = (i: number): string => `${classes[i]} → ${labels[i]}`;
  const n = labels.length;
  if (n <= 12) return labels.map((_, i) => pair(i)).join(', ');
  return `${Array.from({ length: 10 }, (_, i) => pair(i)).join(', ')}, ... (${n - 11} more), ${pair(n - 1)}`;
}

/** Each label's folder by `key`, when every folder is the key of exactly one label; else null. */
function byKey(folders: readonly string[], labels: readonly string[], key: (s: string) => string): (string | undefined)[] | null {
  const labelKeys = labels.map(key);
  const out: (string | undefined)[] = labels.map(() => undefined);
  for (const f of folders) {
    const k = key(f);
    const i = labelKeys.indexOf(k);
    // two labels with one key, or two folders for one label: no way to tell which is meant
    if (i < 0 || labelKeys.indexOf(k, i + 1) >= 0 || out[i] !== undefined) return null;
    out[i] = f;
  }
  return out;
}

export function matchClassFolders(folders: readonly string[], labels: readonly string[]): ClassMatch {
  if (folders.length === 0) {
    return { kind: 'mismatch', reason: `there are no class folders: the images must lie in one sub-folder per class, named after the model's labels (${list(labels.map(labelFolderName))})` };
  }
  const classes = labels.map(labelFolderName);
  if (folders.every((f) => classes.includes(f))) return { kind: 'names', classes };
  const loose = byKey(folders, labels, looseKey);
  // a label without a folder keeps its own name, which no folder has (it would have matched)
  if (loose) return { kind: 'names', classes: loose.map((f, i) => f ?? classes[i]!) };

  const k = labels.length;
  const numeric = folders.every((f) => /^\d+$/.test(f));
  if (numeric) {
    const values = folders.map(Number);
    const distinct = new Set(values).size === values.length;
    if (distinct && values.every((v) => v < k)) return { kind: 'names', classes: labels.map((_, i) => folders[values.indexOf(i)] ?? String(i)) };
    if (distinct && values.length === k && values.every((v) => v >= 1 && v <= k)) {
      const oneBased = labels.map((_, i) => folders[values.indexOf(i + 1)]!);
      return { kind: 'names', classes: oneBased, note: `class folders numbered 1 to ${k} read as 1-based: ${mapping(oneBased, labels)}` };
    }
  }
  if (folders.length === k) {
    const sorted = numeric ? [...folders].sort((a, b) => Number(a) - Number(b) || (a < b ? -1 : 1)) : [...folders].sort();
    return { kind: 'order', classes: sorted, note: `class folders are not the model's labels; taken in ${numeric ? 'numeric' : 'sorted'} order: ${mapping(sorted, labels)}` };
  }
  const strangers = folders.filter((f) => !classes.includes(f));
  return {
    kind: 'mismatch',
    reason: `its class folders (${list(folders)}) are not the model's labels (${list(classes)}): ${list(strangers)} ${strangers.length === 1 ? 'is' : 'are'} not among them, and there are ${folders.length} folders for ${labels.length} labels`,
  };
}
