import { Command, CommanderError } from 'commander';

import { demoCommand } from './demo-command.js';
import { coordinatorCommand } from './coordinator-command.js';
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

/** Runs the command line; returns the exit code. */
export async function main(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const program = buildProgram(io).exitOverride();
  for (const command of program.commands) command.exitOverride();

  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (err instanceof CommandExit) {
      io.stderr.write(`speedlayer: ${err.message}\n`);
      return err.exitCode;
    }
    io.stderr.write(`speedlayer: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
