import { Command, CommanderError } from 'commander';

import { ReadOptionsError } from '../ingest/index.js';
import { demoCommand } from './demo-command.js';
import { coordinatorCommand } from './coordinator-command.js';
import { decommissionCommand } from './decommission-command.js';
import { CommandExit, processIo, type CliIo } from './io.js';
import { fileCommand, filingsCommand, queryCommand, rejectsCommand } from './query-commands.js';
import { replayCommand } from './replay-command.js';
import { serveQueryCommand } from './serve-query-command.js';
import { shardCommand } from './shard-command.js';
import { statusCommand } from './status-command.js';
import { watchCommand } from './watch-command.js';

/** Builds the `speedlayer` command line. */
export function buildProgram(io: CliIo = processIo): Command {
  const program = new Command('speedlayer')
    .description(
      'Exact hourly, daily and weekly active users, pre-computed and served as versioned rows.',
    )
    .version('0.1.0')
    .showHelpAfterError()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });

  for (const command of [
    replayCommand(io),
    queryCommand(io),
    fileCommand(io),
    filingsCommand(io),
    rejectsCommand(io),
    watchCommand(io),
    demoCommand(io),
    serveQueryCommand(),
    shardCommand(),
    coordinatorCommand(),
    statusCommand(io),
    decommissionCommand(io),
  ]) {
    program.addCommand(
      command.configureOutput({
        writeOut: (s) => io.stdout.write(s),
        writeErr: (s) => io.stderr.write(s),
      }),
    );
  }

  return program;
}

/**
 * Makes a flag value that its reader refuses a usage error (exit code 2) naming the flag,
 * as commander's own errors (unknown option, missing value) are.
 */
function flagErrorsAreUsageErrors(command: Command): void {
  for (const option of command.options) {
    const parse = option.parseArg;
    if (parse === undefined) continue;
    option.parseArg = <T>(value: string, previous: T): T => {
      try {
        return parse(value, previous);
      } catch (err) {
        if (err instanceof CommandExit) throw err;
        const why = err instanceof Error ? err.message : String(err);
        throw new CommandExit(2, `${option.long ?? option.flags}: ${why}`);
      }
    };
  }
}

/** Runs the command line; returns the exit code. */
export async function main(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const program = buildProgram(io).exitOverride();
  for (const command of program.commands) {
    command.exitOverride();
    flagErrorsAreUsageErrors(command);
  }

  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (err) {
    // Commander has already said what is wrong; a non-zero exit from it is a usage error.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof CommandExit) {
      io.stderr.write(`speedlayer: ${err.message}\n`);
      return err.exitCode;
    }
    if (err instanceof ReadOptionsError) {
      io.stderr.write(`speedlayer: ${err.message}\n`);
      return 2;
    }
    io.stderr.write(`speedlayer: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
