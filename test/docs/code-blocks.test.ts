// The TypeScript examples of README.md, examples/*/README.md and docs/*.md type-check against the
// package: a fenced `ts` block is compiled as a module of its own, importing from 'ttaq' as a
// program would, so a renamed or invented API name (TELEMETRY.md once called adapter.configure,
// which never existed) fails here instead of in a reader's editor. A block is self-contained:
// what it takes from elsewhere it declares (`declare const adapter: Adapter`). Unused names are
// allowed, since an example may show a value without using it.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The fenced `ts` / `typescript` blocks of a Markdown text, with the line each starts on (1-based). */
export function tsBlocks(markdown: string): { line: number; code: string }[] {
  const out: { line: number; code: string }[] = [];
  const re = /^```(?:ts|typescript)[ \t]*\r?\n([\s\S]*?)^```/gm;
  for (let m = re.exec(markdown); m; m = re.exec(markdown)) {
    out.push({ line: markdown.slice(0, m.index).split('\n').length + 1, code: m[1]! });
  }
  return out;
}

test('tsBlocks reads ts and typescript blocks only', () => {
  const md = 'a\n```ts\nconst x = 1;\n```\n```sh\nls\n```\n```typescript\nlet y;\n```\n';
  assert.deepEqual(tsBlocks(md), [{ line: 3, code: 'const x = 1;\n' }, { line: 9, code: 'let y;\n' }]);
});

const markdown = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`),
  'examples/README.md',
  ...readdirSync(join(ROOT, 'examples'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => `examples/${d.name}/README.md`),
].filter((f) => existsSync(join(ROOT, f)));

/** Each block becomes a virtual file beside its Markdown file, so 'ttaq' resolves to this package. */
const blocks = markdown.flatMap((file) =>
  tsBlocks(readFileSync(join(ROOT, file), 'utf8')).map((b) => ({ ...b, file, path: join(ROOT, `${file}.line${b.line}.ts`) })),
);

/** Type errors of the given virtual files, as `file:line: message` with Markdown line numbers. */
function typeErrors(files: readonly { file: string; line: number; code: string; path: string }[]): string[] {
  const parsed = ts.getParsedCommandLineOfConfigFile(join(ROOT, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
  assert.ok(parsed, 'tsconfig.json could not be read');
  const options: ts.CompilerOptions = { ...parsed.options, noUnusedLocals: false, noUnusedParameters: false };
  const byPath = new Map(files.map((f) => [f.path, f]));
  const host = ts.createCompilerHost(options);
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (p) => byPath.has(p) || fileExists.call(host, p);
  host.readFile = (p) => byPath.get(p)?.code ?? readFile.call(host, p);
  host.getSourceFile = (p, lang, ...rest) => {
    const f = byPath.get(p);
    return f ? ts.createSourceFile(p, f.code, lang) : getSourceFile.call(host, p, lang, ...rest);
  };
  const program = ts.createProgram([...byPath.keys()], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const f = d.file && byPath.get(d.file.fileName);
    const at = f && d.start !== undefined ? `${f.file}:${f.line + d.file!.getLineAndCharacterOfPosition(d.start).line}` : (d.file?.fileName ?? 'tsc');
    return `${at}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
}

// One program for all blocks and the probe below (each program loads the package's types afresh).
const probe = {
  file: 'probe.md', line: 10, path: join(ROOT, 'docs', '__probe.md.line10.ts'),
  code: "import { Adapter } from 'ttaq';\ndeclare const adapter: Adapter;\nadapter.configure({ lr: 1e-3 });\n",
};
let checked: string[] | undefined;
const allErrors = () => (checked ??= typeErrors([...blocks, probe]));

test('docs/TELEMETRY.md has a TypeScript example to check', () => {
  assert.ok(blocks.some((b) => b.file === 'docs/TELEMETRY.md'));
});

test('an invented API name in a block is a type error with its Markdown line', () => {
  const errors = allErrors().filter((e) => e.startsWith('probe.md:'));
  assert.equal(errors.length, 1, errors.join('\n'));
  assert.match(errors[0]!, /^probe\.md:12: Property 'configure' does not exist on type 'Adapter'/);
});

test('the TypeScript blocks of the docs type-check against the package', () => {
  const errors = allErrors().filter((e) => !e.startsWith('probe.md:'));
  assert.deepEqual(errors, [], `fix these examples (the line is the Markdown file's):\n${errors.join('\n')}`);
});
