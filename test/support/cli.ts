import { main } from '../../src/cli/main.js';

/** Runs the `speedlayer` command line in process; returns its exit code and output. */
export async function runCli(
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io = {
    stdout: { write: (s: string) => (stdout += s), isTTY: false },
    stderr: { write: (s: string) => (stderr += s), isTTY: false },
  };
  const code = await main(['node', 'speedlayer', ...args], io);

  return { code, stdout, stderr };
}
