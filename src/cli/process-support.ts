/** Pieces shared by the commands: flags, listen addresses, stop signals and counted nouns. */
import { integerFlag } from '../config/index.js';
import { CommandExit } from './io.js';

/** Signals that make a long-running command drain and exit; a second one ends the process at once. */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

export function portFlag(value: string): number {
  const port = integerFlag(value);
  if (port < 0 || port > 65_535) throw new Error(`not a port: '${value}' (0 to 65535)`);

  return port;
}

/** A comma-separated list of etcd client URLs. */
export function urlListFlag(value: string): string[] {
  const urls = value
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
  if (urls.length === 0) throw new Error(`no URL in '${value}'`);
  for (const url of urls) {
    if (!URL.canParse(url)) throw new Error(`not a URL: '${url}' (write it like http://etcd:2379)`);
  }

  return urls;
}

/**
 * The `--target` of a command: a gRPC address `host:port` (an IPv6 host in brackets), with
 * a port a server can have. Anything else is a usage error, exit code 2, as every command
 * that takes --target gives it; a target that is well formed but cannot be reached is
 * the command's own failure, exit code 1.
 */
export function targetFlag(value: string): string {
  const shaped = /^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:.]+\]:\d{1,5}$/.test(value);
  const port = Number(value.slice(value.lastIndexOf(':') + 1));
  if (!shaped || port < 1 || port > 65_535) {
    throw new CommandExit(2, `--target must be host:port, got '${value}' (e.g. 127.0.0.1:7400)`);
  }

  return value;
}

/** A positive partition count. */
export function partitionCountFlag(value: string): number {
  const n = integerFlag(value);
  if (n < 1 || n > 65_536) throw new Error(`not a partition count: '${value}' (1 to 65536)`);

  return n;
}

/** A count of at least 1, e.g. of shards. */
export function positiveIntegerFlag(value: string): number {
  const n = integerFlag(value);
  if (n < 1) throw new Error(`not a positive integer: '${value}'`);

  return n;
}

/** `n` and the noun, in the plural unless n is 1: "1 batch", "2 batches". */
export function plural(n: number, noun: string, nouns = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : nouns}`;
}

/** An IPv6 host goes in brackets before `:port`. */
export function hostPart(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/**
 * Resolves with the first of `signals` the process receives. Its handlers are removed
 * then, so that a second signal during the drain ends the process the default way.
 */
export function nextSignal(
  signals: readonly NodeJS.Signals[] = STOP_SIGNALS,
): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      for (const s of signals) process.off(s, onSignal);
      resolve(signal);
    };
    for (const s of signals) process.on(s, onSignal);
  });
}
