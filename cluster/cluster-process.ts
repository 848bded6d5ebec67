/**
 * One process of a local cluster (etcd, a shard, a coordinator) as a child of the
 * launcher: started, signalled, restarted with the same command line, and stopped. Its
 * output lines are kept in memory (the JSON ones parsed, for waiters) and, optionally,
 * appended to a log file.
 *
 * Children run in their own process group, so that a Ctrl-C in the launcher's terminal
 * reaches the launcher alone: it then stops them one signal each, in order. A second
 * signal would end a speedlayer process without its drain.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';

/** A JSON log line (pino's shape: `level`, `time`, `msg` and bound fields). */
export interface LogLine {
  readonly msg?: string;
  readonly level?: number;
  readonly [field: string]: unknown;
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ClusterProcessOptions {
  /** The name the launcher uses for it, e.g. `shard-1`. */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** Appends every output line here, across restarts. */
  readonly logFile?: string;
  /** How many output lines stay in memory. @default 20000 */
  readonly keepLines?: number;
}

export interface WaitOptions {
  /** @default 30000 */
  readonly timeoutMs?: number;
  /**
   * Only lines from this sequence number on ({@link ClusterProcess.mark}).
   * @default the first line of the current incarnation
   */
  readonly since?: number;
}

interface Entry {
  readonly seq: number;
  readonly line: LogLine;
}

const DEFAULT_KEEP_LINES = 20_000;
const TAIL_LINES = 40;
const DEFAULT_WAIT_MS = 30_000;

export class ClusterProcess {
  readonly name: string;
  private child: ChildProcess | undefined;
  private exitedPromise: Promise<ExitInfo> = Promise.resolve({ code: null, signal: null });
  private readonly entries: Entry[] = [];
  private readonly tail: string[] = [];
  private readonly waiters = new Set<() => void>();
  private nextSeq = 0;
  private incarnationStart = 0;
  private incarnations = 0;
  private paused = false;
  private exitInfo: ExitInfo | undefined;
  private readonly killOnExit = (): void => {
    if (this.running) this.child?.kill('SIGKILL');
  };

  constructor(private readonly options: ClusterProcessOptions) {
    this.name = options.name;
  }

  /** The pid of the current incarnation, if one was started. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Started, and its exit not yet seen with all of its output read. */
  get running(): boolean {
    return this.child !== undefined && this.exitInfo === undefined;
  }

  /** How many times it was started. */
  get incarnation(): number {
    return this.incarnations;
  }

  /** Resolves when the current incarnation exits (at once if none runs). */
  get exited(): Promise<ExitInfo> {
    return this.exitedPromise;
  }

  /** The sequence number the next output line will get. */
  mark(): number {
    return this.nextSeq;
  }

  /** The JSON lines still in memory, oldest first. */
  lines(since = 0): LogLine[] {
    return this.entries.filter((e) => e.seq >= since).map((e) => e.line);
  }

  /** The last output lines, JSON or not, for error messages. */
  outputTail(): string {
    return this.tail.join('\n');
  }

  /** Spawns a new incarnation with the same command line. */
  start(): void {
    if (this.running) throw new Error(`${this.name} is already running (pid ${this.pid})`);

    const o = this.options;
    const child = spawn(o.command, [...o.args], {
      env: o.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.child = child;
    this.exitInfo = undefined;
    this.incarnations++;
    this.incarnationStart = this.nextSeq;
    this.paused = false;

    const file = o.logFile === undefined ? undefined : createWriteStream(o.logFile, { flags: 'a' });
    file?.on('error', () => undefined); // A full disk must not take the launcher down.
    let open = 2;
    const onClosed = (): void => {
      if (--open === 0) file?.end();
    };
    this.follow(child.stdout, file, onClosed);
    this.follow(child.stderr, file, onClosed);

    this.exitedPromise = new Promise((resolve) => {
      const exited = (info: ExitInfo): void => {
        if (this.child !== child || this.exitInfo !== undefined) return;
        this.exitInfo = info;
        process.off('exit', this.killOnExit);
        resolve(info);
        this.wake();
      };
      child.on('error', (err) => {
        // Also emitted when a signal cannot be sent; only a spawn failure leaves no pid.
        if (child.pid !== undefined) return;
        this.note(`${this.name}: could not start: ${err.message}`, undefined);
        exited({ code: null, signal: null });
      });
      // 'close', not 'exit': by then every line it wrote has been read.
      child.once('close', (code, signal) => exited({ code, signal }));
    });
    process.on('exit', this.killOnExit);
  }

  /** Sends `signal` to the current incarnation; false when none runs. */
  signal(signal: NodeJS.Signals): boolean {
    if (!this.running) return false;
    if (signal === 'SIGSTOP') this.paused = true;
    if (signal === 'SIGCONT') this.paused = false;

    return (this.child as ChildProcess).kill(signal);
  }

  /**
   * SIGTERM, then SIGKILL if it has not exited after `graceMs`. A paused process gets
   * SIGCONT too, or the SIGTERM would wait for it. Resolves with how it exited.
   */
  async stop(graceMs: number): Promise<ExitInfo> {
    if (!this.running) return this.exitedPromise;

    this.signal('SIGTERM');
    if (this.paused) this.signal('SIGCONT');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(resolve, graceMs, 'late')));
    const first = await Promise.race([this.exitedPromise, late]);
    clearTimeout(timer);
    if (first === 'late') this.signal('SIGKILL');

    return this.exitedPromise;
  }

  /** Resolves with the first JSON line that satisfies `predicate`. */
  waitForLog(predicate: (line: LogLine) => boolean, options: WaitOptions = {}): Promise<LogLine> {
    const since = options.since ?? this.incarnationStart;
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_MS;
    let checked = since;

    return new Promise((resolve, reject) => {
      const check = (): void => {
        for (const entry of this.entries) {
          if (entry.seq < checked) continue;
          checked = entry.seq + 1;
          if (predicate(entry.line)) return settle(() => resolve(entry.line));
        }
        if (!this.running) {
          settle(() => reject(new Error(`${this.name} exited first:\n${this.outputTail()}`)));
        }
      };
      const timer = setTimeout(
        () =>
          settle(() =>
            reject(
              new Error(`${this.name}: no such line within ${timeoutMs} ms:\n${this.outputTail()}`),
            ),
          ),
        timeoutMs,
      );
      const settle = (done: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        done();
      };
      this.waiters.add(check);
      check();
    });
  }

  private follow(stream: Readable | null, file: WriteStream | undefined, onClosed: () => void) {
    if (stream === null) {
      onClosed();
      return;
    }
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    lines.on('line', (text) => this.note(text, file));
    lines.once('close', onClosed);
  }

  private note(text: string, file: WriteStream | undefined): void {
    file?.write(`${text}\n`);
    this.tail.push(text);
    if (this.tail.length > TAIL_LINES) this.tail.shift();

    const line = parseLogLine(text);
    if (line === undefined) return;
    this.entries.push({ seq: this.nextSeq++, line });
    const keep = this.options.keepLines ?? DEFAULT_KEEP_LINES;
    if (this.entries.length > keep) this.entries.splice(0, this.entries.length - keep);
    this.wake();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

function parseLogLine(text: string): LogLine | undefined {
  if (!text.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(text);

    return typeof value === 'object' && value !== null ? (value as LogLine) : undefined;
  } catch {
    return undefined;
  }
}
