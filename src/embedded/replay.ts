import path from 'node:path';

import {
  identifySources,
  planReadable,
  readEvents,
  sortByReceiveTime,
  withSource,
  type ReadOptions,
} from '../ingest/index.js';
import type { EventBatch, RejectReason } from '../ingest/types.js';
import type { Logger } from '../observability/index.js';
import { jsonPut } from '../shard/level-state-store.js';
import { Warehouse } from '../sink/warehouse.js';
import { EmbeddedNode, type EngineSettings } from './embedded-node.js';

const PROGRESS_KEY = 'replay/progress';

/** What to replay and where to. */
export interface ReplayOptions {
  readonly paths: readonly string[];
  readonly read: Omit<ReadOptions, 'fromLine'>;
  readonly dataDir: string;
  /** A PostgreSQL server for the rows, instead of the embedded store in the data directory. */
  readonly postgresUrl?: string;
  /** The schema on that server. @default public */
  readonly postgresSchema?: string;
  readonly settings: EngineSettings;
  /** Wall time between coordinator rounds (checkpoint, close, restate). @default 5000 */
  readonly roundIntervalMs?: number;
  readonly logger: Logger;
  /** Called after every batch. */
  readonly onProgress?: (progress: ReplayProgress) => void;
  /** The wall clock, the receive time of events that carry none. @default Date.now */
  readonly now?: () => number;
  /**
   * Stops the replay after the batch in flight: what was read is checkpointed
   * and the periods are left open, so that running the replay again resumes it.
   */
  readonly signal?: AbortSignal;
}

export interface ReplayProgress {
  readonly source: string;
  readonly records: number;
  readonly accepted: number;
  readonly rejected: number;
}

/** The outcome of a replay. */
export interface ReplaySummary {
  /** Records read in this run (events and rejected records). */
  readonly records: number;
  readonly accepted: number;
  readonly rejected: Partial<Record<RejectReason, number>>;
  /** What an earlier, interrupted run of the same replay had already done (null when nothing). */
  readonly resumed: string | null;
  /** Distinct users known in the data directory. */
  readonly distinctUsers: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  /** Stopped by the signal before the end of the input; run again to resume. */
  readonly interrupted: boolean;
}

interface Progress {
  /** Streamed replay: the last line done, per source. */
  lines: Record<string, number>;
  /** Replay in receive-time order: how many events of the sorted input are done, per input signature. */
  sorted: Record<string, number>;
}

/**
 * Replays event files through the embedded engine to the end, closes every
 * period and writes the rows. A replay that was interrupted resumes from its
 * last checkpoint when run again on the same data directory.
 *
 * With a receive-time field the input is replayed in receive-time order
 * (stable, file order breaking ties), and the watermark follows that clock as
 * it would follow the wall clock in live operation.
 */
export async function runReplay(options: ReplayOptions): Promise<ReplaySummary> {
  // Input problems (missing files, unknown formats) surface before any store is opened.
  const sources = await identifySources(options.paths);
  await planReadable([...sources.keys()], options.read);

  const logger = options.logger.child({ component: 'replay' });
  const warehouse = await Warehouse.open(
    options.postgresUrl === undefined
      ? { dataDir: options.dataDir }
      : { postgresUrl: options.postgresUrl, schema: options.postgresSchema },
  );

  try {
    const node = await EmbeddedNode.open({
      ...options.settings,
      stateDir: path.join(options.dataDir, 'state'),
      warehouse,
      logger: options.logger,
      now: options.now,
    });
    // Timed from here: the stores are open, so the figure is the replay's own.
    const started = performance.now();
    const run = new ReplayRun(node, options, sources, logger);
    await run.execute();

    const seconds = (performance.now() - started) / 1000;
    const summary: ReplaySummary = {
      records: run.records,
      accepted: run.accepted,
      rejected: run.rejected,
      resumed: run.resumed,
      distinctUsers: node.knownUsers,
      seconds,
      eventsPerSecond: run.records / seconds,
      interrupted: run.interrupted,
    };
    logger.info({ ...summary }, 'replay finished');

    return summary;
  } finally {
    await warehouse.close();
  }
}

class ReplayRun {
  records = 0;
  accepted = 0;
  resumed: string | null = null;
  interrupted = false;
  readonly rejected: Partial<Record<RejectReason, number>> = {};
  private progress: Progress = { lines: {}, sorted: {} };
  private lastRound = performance.now();

  constructor(
    private readonly node: EmbeddedNode,
    private readonly options: ReplayOptions,
    private readonly sources: Map<string, string>,
    private readonly logger: ReplayOptions['logger'],
  ) {}

  async execute(): Promise<void> {
    const stored = await this.node.getRecord<Progress>(PROGRESS_KEY);
    if (stored !== undefined) this.progress = stored;
    this.logger.info(
      { sources: [...this.sources.values()], resume: stored !== undefined },
      'replay started',
    );

    if (this.options.read.receiveTimeField === undefined) await this.streamInFileOrder();
    else await this.replayInReceiveOrder();

    // An interrupted replay keeps its periods open: closing them would make the rest late.
    if (!this.interrupted) await this.node.finish();
    await this.node.round([jsonPut(PROGRESS_KEY, this.progress)]);
    await this.node.close();
  }

  private async streamInFileOrder(): Promise<void> {
    const fromLine = new Map<string, number>();
    const resumed: string[] = [];
    for (const [file, sourceId] of this.sources) {
      const line = this.progress.lines[sourceId];
      if (line === undefined) continue;
      fromLine.set(file, line);
      resumed.push(`${path.basename(file)} up to line ${line}`);
    }
    if (resumed.length > 0) this.resumed = resumed.join(', ');

    const files = [...this.sources.keys()];
    for await (const batch of readEvents(files, { ...this.options.read, fromLine })) {
      const sourceId = this.sourceIdOf(batch.source);
      await this.ingest(withSource(batch, sourceId));
      this.progress.lines[sourceId] = batch.lastLine;
      if (this.stopRequested()) return;
      await this.maybeRound();
    }
  }

  private async replayInReceiveOrder(): Promise<void> {
    const all: EventBatch[] = [];
    const files = [...this.sources.keys()];
    for await (const batch of readEvents(files, this.options.read)) {
      all.push(withSource(batch, this.sourceIdOf(batch.source)));
    }

    const signature = [...this.sources.values()].join('|');
    const ordered = sortByReceiveTime(all, this.options.read.batchSize ?? 8192);
    const done = this.progress.sorted[signature] ?? 0;
    let position = 0;

    for (const batch of ordered) {
      const end = position + batch.length;
      // `done` counts events: a first batch of rejects only (no record had an event) is
      // never done, and recording its rejects again is a no-op (one per source and line).
      if (done > 0 && end <= done) {
        this.resumed = `${done} events in receive order`;
      } else {
        await this.ingest(batch);
      }
      position = end;
      this.progress.sorted[signature] = Math.max(done, position);
      if (this.stopRequested()) return;
      await this.maybeRound();
    }
  }

  private stopRequested(): boolean {
    if (this.options.signal?.aborted !== true) return false;
    this.interrupted = true;
    this.logger.info({ records: this.records }, 'replay interrupted; run it again to resume');

    return true;
  }

  private sourceIdOf(file: string): string {
    return this.sources.get(file) ?? file;
  }

  private async ingest(batch: EventBatch): Promise<void> {
    const result = await this.node.ingest(batch);
    this.records += batch.length + batch.rejects.length;
    this.accepted += result.accepted;
    for (const reject of result.rejects)
      this.rejected[reject.reason] = (this.rejected[reject.reason] ?? 0) + 1;

    this.options.onProgress?.({
      source: batch.source,
      records: this.records,
      accepted: this.accepted,
      rejected: this.records - this.accepted,
    });
  }

  private async maybeRound(): Promise<void> {
    if (performance.now() - this.lastRound < (this.options.roundIntervalMs ?? 5000)) return;
    await this.node.round([jsonPut(PROGRESS_KEY, this.progress)]);
    this.lastRound = performance.now();
  }
}
