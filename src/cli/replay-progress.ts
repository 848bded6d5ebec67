/** What the embedded replay and the one with --target share: the progress bar and Ctrl-C. */
import cliProgress from 'cli-progress';

import type { CliIo } from './io.js';

/** The progress bar on stderr, or null with --no-progress or when stderr is not a terminal. */
export function progressBar(io: CliIo, wanted: boolean): cliProgress.SingleBar | null {
  if (!wanted || io.stderr.isTTY !== true) return null;

  const bar = new cliProgress.SingleBar(
    {
      format: 'replay | {value} records | {accepted} accepted | {rejected} rejected | {duration}s',
      stream: process.stderr,
      noTTYOutput: false,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(0, 0, { accepted: 0, rejected: 0 });

  return bar;
}

/**
 * Runs `body` with a signal that Ctrl-C or SIGTERM aborts, so that the replay stops after
 * the batches in flight; a second one exits at once with 130.
 */
export async function withStopSignal<T>(body: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const stop = new AbortController();
  const onSignal = (): void => {
    if (stop.signal.aborted) process.exit(130);
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await body(stop.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
