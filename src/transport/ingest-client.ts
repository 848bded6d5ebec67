/**
 * A client of one node's Ingest service for replays and backfills: batches go over one
 * SendStream with a bounded window of batches in flight, and are matched with their
 * acknowledgements by batch id (acknowledgements come in any order).
 *
 * A node that goes down, a stream that breaks and a node that stops answering are all
 * met the same way: open a new stream after a backoff and send every unacknowledged
 * batch again, with the same batch id. That is safe because a node applies a batch id
 * once (sending it again never changes a count), so the client never has to know
 * whether a lost batch had reached the node. It gives up after an overall deadline, or
 * when nothing has been acknowledged for a while.
 */
import * as grpc from '@grpc/grpc-js';

import type { Logger } from '../observability/index.js';
import { CLIENT_KEEPALIVE_OPTIONS } from './keepalive.js';
import { IngestClientError, errorText, isRetryable, refused } from './ingest-client-errors.js';
import {
  SendRun,
  sleepUnlessStopped,
  throwIfStopped,
  withJitter,
  type IngestTotals,
  type RunSettings,
  type SendOptions,
} from './ingest-send-run.js';
import {
  loadSpeedlayerProtos,
  type EventBatchRequestWire,
  type IngestClient as IngestStub,
} from './proto.js';

export { IngestClientError } from './ingest-client-errors.js';
export type { IngestClientErrorKind } from './ingest-client-errors.js';
export type { BatchOutcome, IngestTotals, SendOptions } from './ingest-send-run.js';

export interface IngestClientOptions {
  /** Batches sent and not yet acknowledged, at most. @default 8 */
  readonly windowSize?: number;
  /** How long one send() or finish() may take in all, retries included. @default no limit */
  readonly deadlineMs?: number;
  /**
   * A stream with batches in flight and no acknowledgement for this long is reopened.
   * @default 30_000
   */
  readonly ackTimeoutMs?: number;
  /** send() and finish() give up when nothing was acknowledged for this long. @default 120_000 */
  readonly stallTimeoutMs?: number;
  /** The first wait before a new stream; doubles, with jitter, up to the maximum. @default 100 */
  readonly initialBackoffMs?: number;
  /** @default 5_000 */
  readonly maxBackoffMs?: number;
  /** @default insecure */
  readonly credentials?: grpc.ChannelCredentials;
  /** Merged over {@link DEFAULT_INGEST_CHANNEL_OPTIONS}. */
  readonly channelOptions?: grpc.ChannelOptions;
}

/** Channel options of an ingest client, before the caller's own. */
export const DEFAULT_INGEST_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // A restarted node is found again within seconds, not gRPC's default of up to two minutes.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 2_000,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  ...CLIENT_KEEPALIVE_OPTIONS,
};

/** The Ingest service of one node. */
export class IngestClient {
  private readonly stub: IngestStub;
  private readonly logger: Logger;
  private readonly runs = new Set<AbortController>();
  private closed = false;

  constructor(
    /** `host:port` of the node. */
    readonly address: string,
    logger: Logger,
    private readonly options: IngestClientOptions = {},
  ) {
    const { ingest } = loadSpeedlayerProtos();
    this.stub = new ingest.Client(
      address,
      options.credentials ?? grpc.credentials.createInsecure(),
      { ...DEFAULT_INGEST_CHANNEL_OPTIONS, ...options.channelOptions },
    );
    this.logger = logger.child({ component: 'ingest-client', target: address });
  }

  /**
   * Sends every batch of `input` and resolves once each is acknowledged. Batch ids must
   * be unique within the input; a batch is taken from the input only when the window
   * has room, so a large input is never held in memory.
   *
   * @throws IngestClientError when a batch cannot be delivered: the batches acknowledged
   *   before stay acknowledged, and sending the input again is safe
   */
  async send(
    input: AsyncIterable<EventBatchRequestWire> | Iterable<EventBatchRequestWire>,
    options: SendOptions = {},
  ): Promise<IngestTotals> {
    const iterator = Symbol.asyncIterator in input ? input[Symbol.asyncIterator]() : toAsync(input);

    return this.withRun(async (stop) => {
      const run = new SendRun(this.stub, iterator, this.settings(), this.logger, options, stop);
      const totals = await run.execute();
      this.logger.info({ ...totals }, 'ingest send finished');

      return totals;
    });
  }

  /**
   * Asks the node to close every period it has seen (the end of a replay); resolves with
   * its watermark (epoch ms), or null when it has routed no event. Retried like a batch.
   */
  async finish(): Promise<number | null> {
    return this.withRun(async (stop) => {
      const settings = this.settings();
      const started = Date.now();
      let backoffMs = settings.initialBackoffMs;

      for (let attempt = 1; ; attempt++) {
        const callDeadline = Math.min(
          started + settings.deadlineMs,
          Date.now() + settings.stallTimeoutMs,
        );
        try {
          const response = await new Promise<{ watermark_ms?: number }>((resolve, reject) => {
            const call = this.stub.Finish(
              {},
              new grpc.Metadata(),
              { deadline: callDeadline },
              (err, res) => (err ? reject(err) : resolve(res ?? {})),
            );
            stop.signal.addEventListener('abort', () => call.cancel(), { once: true });
          });

          return response.watermark_ms ?? null;
        } catch (err) {
          throwIfStopped(stop.signal);
          if (!isRetryable(err)) throw refused('Finish', err);

          const elapsed = Date.now() - started;
          if (elapsed >= settings.deadlineMs || elapsed >= settings.stallTimeoutMs) {
            const kind = elapsed >= settings.deadlineMs ? 'deadline-exceeded' : 'unavailable';
            throw new IngestClientError(
              kind,
              `Finish to ${this.address} failed after ${attempt} attempts: ${errorText(err)}`,
              { cause: err },
            );
          }

          this.logger.warn(
            { attempt, err: errorText(err), backoffMs },
            'ingest finish failed; retrying',
          );
          await sleepUnlessStopped(withJitter(backoffMs), stop.signal);
          backoffMs = Math.min(backoffMs * 2, settings.maxBackoffMs);
        }
      }
    });
  }

  /**
   * Waits until the channel to the node is ready, so that an address where nothing
   * listens fails at once rather than after the stall timeout. Resolves false when
   * `signal` aborts first.
   *
   * @throws IngestClientError 'unavailable' when the node cannot be reached in `timeoutMs`
   */
  async connect(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted === true) return false;

    return new Promise<boolean>((resolve, reject) => {
      const onAbort = (): void => resolve(false);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.stub.waitForReady(Date.now() + timeoutMs, (error) => {
        signal?.removeEventListener('abort', onAbort);
        if (error === undefined) {
          resolve(true);
          return;
        }
        const seconds = Math.round(timeoutMs / 1000);
        reject(
          new IngestClientError(
            'unavailable',
            `cannot reach the Ingest service at ${this.address} within ${seconds}s: ${error.message}`,
            { cause: error },
          ),
        );
      });
    });
  }

  /** Closes the channel; a send() or finish() in progress fails with 'closed'. Idempotent. */
  close(): void {
    this.closed = true;
    for (const run of this.runs)
      run.abort(new IngestClientError('closed', 'the ingest client was closed'));
    this.stub.close();
  }

  private async withRun<T>(body: (stop: AbortController) => Promise<T>): Promise<T> {
    if (this.closed) throw new IngestClientError('closed', 'the ingest client is closed');

    const stop = new AbortController();
    this.runs.add(stop);
    try {
      return await body(stop);
    } finally {
      this.runs.delete(stop);
    }
  }

  private settings(): RunSettings {
    const o = this.options;

    return {
      windowSize: o.windowSize ?? 8,
      deadlineMs: o.deadlineMs ?? Number.POSITIVE_INFINITY,
      ackTimeoutMs: o.ackTimeoutMs ?? 30_000,
      stallTimeoutMs: o.stallTimeoutMs ?? 120_000,
      initialBackoffMs: o.initialBackoffMs ?? 100,
      maxBackoffMs: o.maxBackoffMs ?? 5_000,
    };
  }
}

async function* toAsync<T>(items: Iterable<T>): AsyncGenerator<T> {
  yield* items;
}
