/**
 * `--target HOST:PORT` on every command that takes it: a target that is not `host:port`
 * (or whose port no server can have) is a usage error, exit code 2 before anything is
 * opened, worded the same everywhere; a well-formed target where nothing listens is a
 * connection failure, exit code 1. A store flag typed beside it is a usage error too.
 */
import { describe, expect, it } from 'vitest';

import { buildProgram } from '../../src/cli/main.js';
import { runCli } from '../support/cli.js';

const MALFORMED = ['localhost', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', 'a b:7400', ':7400'];

/** The commands whose options include --target, by name. */
function commandsWithTarget(): string[] {
  return buildProgram()
    .commands.filter((c) => c.options.some((o) => o.long === '--target'))
    .map((c) => c.name());
}

describe('--target', () => {
  it('is refused with exit code 2 when it is not host:port, by every command that takes it', async () => {
    const commands = commandsWithTarget();
    expect(commands).toEqual(
      expect.arrayContaining(['replay', 'query', 'file', 'filings', 'rejects', 'status']),
    );

    for (const command of commands) {
      for (const target of MALFORMED) {
        const run = await runCli([command, '--target', target]);
        expect({ command, target, code: run.code }).toEqual({ command, target, code: 2 });
        expect(run.stderr).toBe(
          `speedlayer: --target must be host:port, got '${target}' (e.g. 127.0.0.1:7400)\n`,
        );
        expect(run.stdout).toBe('');
      }
    }
  });

  it('is refused with exit code 2 beside a store flag, which it would ignore', async () => {
    for (const command of ['query', 'filings', 'rejects']) {
      const run = await runCli([
        command,
        '--target',
        '127.0.0.1:1',
        '--data-dir',
        '/nonexistent',
        '--postgres-schema',
        'x',
      ]);
      expect({ command, code: run.code }).toEqual({ command, code: 2 });
      expect(run.stderr).toBe(
        'speedlayer: --target reads through the Query service; leave out --data-dir, --postgres-schema\n',
      );
    }
  });

  it('fails with exit code 1 when nothing listens at a well-formed target', async () => {
    const query = await runCli(['query', '--target', '127.0.0.1:1']);
    expect(query.code).toBe(1);
    expect(query.stderr).toContain('cannot reach the query service at 127.0.0.1:1');

    const status = await runCli(['status', '--target', '127.0.0.1:1', '--timeout', '1s']);
    expect(status.code).toBe(1);
    expect(status.stderr).toContain('cannot reach the coordinator service at 127.0.0.1:1');
  });
});
