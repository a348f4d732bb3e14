// The `ttaq` dispatcher: `ttaq <command> [options]`. Each command is one file `tools/<command>.ts`
// exporting `summary` and `run(argv)`; adding a command is adding a file.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { reportError } from './lib/cli.ts';

export interface Command {
  readonly summary: string;
  run(argv: string[]): Promise<number>;
}

const here = dirname(fileURLToPath(import.meta.url));
const commandNames = (): string[] =>
  readdirSync(here)
    .filter((f) => f.endsWith('.ts') && f !== 'ttaq.ts')
    .map((f) => f.slice(0, -3))
    .sort();

async function load(name: string): Promise<Command> {
  return (await import(join(here, `${name}.ts`))) as Command;
}

async function usage(): Promise<void> {
  const lines = ['usage: ttaq <command> [options]   (ttaq <command> --help for its options)', '', 'commands:'];
  for (const name of commandNames()) lines.push(`  ${name.padEnd(10)} ${(await load(name)).summary}`);
  process.stdout.write(lines.join('\n') + '\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    await usage();
    return name ? 0 : 2;
  }
  if (!commandNames().includes(name)) {
    process.stderr.write(`ttaq: unknown command '${name}'. Run 'ttaq --help' for the list.\n`);
    return 2;
  }
  return (await load(name)).run(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  // A command that failed may leave a socket, server or timer open (a broker connection half
  // made): the error is reported, so nothing is left for the process to wait for.
  (e: unknown) => process.exit(reportError(e)),
);
