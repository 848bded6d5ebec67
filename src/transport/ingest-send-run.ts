/**
 * One send() of the ingest client: a bounded window of batches in flight, matched with
 * their acknowledgements by batch id, and written again on every new stream until
 * acknowledged.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';

import type { RejectReason } from '../ingest/types.js';
import type { Logger } from '../observability/index.js';
import {
  IngestClientError,
  asError,
  errorText,
  isRetryable,
  refused,
} from './ingest-client-errors.js';
import {
  rejectReasonFromWire,
  type EventBatchRequestWire,
  type IngestAckWire,
  type IngestClient as IngestStub,
} from './proto.js';

/** Per call of {@link IngestClient.send}. */
export interface SendOptions {
  /** Called once per batch, when it is acknowledged. */
  readonly onAck?: (outcome: BatchOutcome, request: EventBatchRequestWire) => void;
  /** Stops taking batches from the input; those already taken are still sent until acknowledged. */
  readonly signal?: AbortSignal;
}

/** What a node answered for one batch. */
export interface BatchOutcome {
  readonly batchId: string;
  /** Events durable on their owners. */
  readonly accepted: number;
  /** The other events, by their index in the batch. */
  readonly rejected: readonly { index: number; reason: RejectReason; detail: string }[];
}

/** What one send() did. */
export interface IngestTotals {
  /** Batches acknowledged. */
  readonly batches: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly rejects: Partial<Record<RejectReason, number>>;
  /** Streams opened again after one failed. */
  readonly reconnects: number;
  /** The signal stopped the input before its end (what was taken was still acknowledged). */
  readonly interrupted: boolean;
}

export interface RunSettings {
  readonly windowSize: number;
  readonly deadlineMs: number;
  readonly ackTimeoutMs: number;
  readonly stallTimeoutMs: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
}

/** How one stream ended. */
type StreamEnd =
  | { readonly kind: 'done' }
  | { readonly kind: 'failed'; readonly error: unknown }
  | { readonly kind: 'fatal'; readonly error: Error };

/** The stream open now, if any. */
interface OpenStream {
  write(request: EventBatchRequestWire): void;
  end(result: StreamEnd): void;
}

/**
 * One send(): the batches in flight (written, not acknowledged) outlive the streams
 * they were written on, and are written again, in their order, on each new stream.
 */
export class SendRun {
  private readonly pending = new Map<string, EventBatchRequestWire>();
  private readonly rejects: Partial<Record<RejectReason, number>> = {};
  private batches = 0;
  private accepted = 0;
  private rejected = 0;
  private reconnects = 0;
  private interrupted = false;
  private inputDone = false;
  private pulling = false;
  private stream: OpenStream | null = null;
  private fatal: Error | null = null;
  /** Why the last stream failed. */
  private lastError: unknown = null;
  /** When the last batch was acknowledged, or the window last filled from empty. */
  private progressAt = Date.now();

  constructor(
    private readonly stub: IngestStub,
    private readonly input: AsyncIterator<EventBatchRequestWire>,
    private readonly settings: RunSettings,
    private readonly logger: Logger,
    private readonly options: SendOptions,
    private readonly stop: AbortController,
  ) {}

  async execute(): Promise<IngestTotals> {
    const onDeadline = (): void => {
      const why = this.lastError === null ? '' : `; last error: ${errorText(this.lastError)}`;
      const text = this.unackedText(`the deadline of ${this.settings.deadlineMs} ms passed${why}`);
      this.fail(new IngestClientError('deadline-exceeded', text, { cause: this.lastError }));
    };
    // Timers take at most 2^31 - 1 ms (24.8 days); a longer deadline is no deadline.
    const deadline =
      this.settings.deadlineMs < 2 ** 31
        ? setTimeout(onDeadline, this.settings.deadlineMs)
        : undefined;
    const onStop = (): void => this.fail(asError(this.stop.signal.reason));
    const onInterrupt = (): void => this.pump();
    this.stop.signal.addEventListener('abort', onStop, { once: true });
    this.options.signal?.addEventListener('abort', onInterrupt, { once: true });

    try {
      let backoffMs = this.settings.initialBackoffMs;
      for (;;) {
        const acked = this.batches;
        const end = await this.openStream();
        if (end.kind === 'done') return this.totals();
        if (end.kind === 'fatal') throw end.error;

        this.lastError = end.error;
        if (this.batches > acked) backoffMs = this.settings.initialBackoffMs;
        const stalledMs = Date.now() - this.progressAt;
        if (stalledMs >= this.settings.stallTimeoutMs) {
          throw new IngestClientError(
            'unavailable',
            this.unackedText(
              `nothing acknowledged for ${stalledMs} ms; last error: ${errorText(end.error)}`,
            ),
            { cause: end.error },
          );
        }

        const waitMs = withJitter(backoffMs);
        this.logger.warn(
          { err: errorText(end.error), unacknowledged: this.pending.size, backoffMs: waitMs },
          'ingest stream failed; resending unacknowledged batches',
        );
        await sleepUnlessStopped(waitMs, this.stop.signal);
        this.throwIfFatal();
        backoffMs = Math.min(backoffMs * 2, this.settings.maxBackoffMs);
        this.reconnects++;
      }
    } finally {
      clearTimeout(deadline);
      this.stop.signal.removeEventListener('abort', onStop);
      this.options.signal?.removeEventListener('abort', onInterrupt);
      await this.input.return?.().catch(() => undefined);
    }
  }

  /** Opens a stream, writes the batches in flight again, and runs it until it ends. */
  private openStream(): Promise<StreamEnd> {
    this.throwIfFatal();

    return new Promise<StreamEnd>((resolve) => {
      const call = this.stub.SendStream();
      let lastAckAt = Date.now();
      const watchdog = setInterval(
        () => {
          const quietMs = Date.now() - Math.max(lastAckAt, this.progressAt);
          if (this.pending.size > 0 && quietMs >= this.settings.ackTimeoutMs) {
            end({ kind: 'failed', error: new Error(`no acknowledgement for ${quietMs} ms`) });
          }
        },
        Math.max(10, Math.min(1_000, this.settings.ackTimeoutMs / 4)),
      );

      const end = (result: StreamEnd): void => {
        if (this.stream !== open) return;
        this.stream = null;
        clearInterval(watchdog);
        if (result.kind === 'done') call.end();
        else call.cancel();
        resolve(result);
      };
      const open: OpenStream = { write: (request) => call.write(request), end };
      this.stream = open;

      call.on('data', (ack: IngestAckWire) => {
        lastAckAt = Date.now();
        try {
          this.acknowledge(ack);
        } catch (err) {
          end({ kind: 'fatal', error: asError(err) });
          return;
        }
        this.pump();
      });
      call.on('error', (error) => {
        end(
          isRetryable(error)
            ? { kind: 'failed', error }
            : { kind: 'fatal', error: refused('SendStream', error) },
        );
      });
      // A failed status comes as 'error'; an OK one while batches are in flight is a node
      // that closed the stream early (e.g. while draining).
      call.on('status', (status) => {
        if (status.code === grpc.status.OK) {
          end({ kind: 'failed', error: new Error('the node ended the stream') });
        }
      });

      for (const request of this.pending.values()) call.write(request);
      this.pump();
    });
  }

  /** Takes input while the window has room; ends the stream once all is acknowledged. */
  private pump(): void {
    if (this.fatal !== null) return;
    if (!this.inputDone && this.options.signal?.aborted === true) {
      this.inputDone = true;
      this.interrupted = true;
    }

    if (this.inputDone && !this.pulling && this.pending.size === 0) {
      this.stream?.end({ kind: 'done' });
      return;
    }

    if (this.inputDone || this.pulling || this.pending.size >= this.settings.windowSize) return;

    this.pulling = true;
    void this.input.next().then(
      (result) => {
        this.pulling = false;
        if (result.done === true) this.inputDone = true;
        else this.take(result.value);
        this.pump();
      },
      (err: unknown) => {
        this.pulling = false;
        this.fail(
          new IngestClientError('invalid-input', `reading the input failed: ${errorText(err)}`, {
            cause: err,
          }),
        );
      },
    );
  }

  private take(request: EventBatchRequestWire): void {
    if (this.pending.has(request.batch_id)) {
      this.fail(
        new IngestClientError(
          'invalid-input',
          `batch id '${request.batch_id}' is already in flight`,
        ),
      );
      return;
    }

    if (this.pending.size === 0) this.progressAt = Date.now();
    this.pending.set(request.batch_id, request);
    this.stream?.write(request);
  }

  private acknowledge(ack: IngestAckWire): void {
    const request = this.pending.get(ack.batch_id);
    if (request === undefined) {
      throw new IngestClientError(
        'protocol',
        `acknowledgement for batch '${ack.batch_id}', which is not in flight`,
      );
    }
    if (ack.accepted + ack.rejected.length !== request.events.length) {
      throw new IngestClientError(
        'protocol',
        `batch '${ack.batch_id}' has ${request.events.length} events, but its acknowledgement counts ${ack.accepted} accepted and ${ack.rejected.length} rejected`,
      );
    }

    const outcome: BatchOutcome = {
      batchId: ack.batch_id,
      accepted: ack.accepted,
      rejected: ack.rejected.map((r) => ({
        index: r.index,
        reason: reasonOf(r.reason),
        detail: r.detail,
      })),
    };
    this.pending.delete(ack.batch_id);
    this.progressAt = Date.now();
    this.batches++;
    this.accepted += outcome.accepted;
    this.rejected += outcome.rejected.length;
    for (const r of outcome.rejected) this.rejects[r.reason] = (this.rejects[r.reason] ?? 0) + 1;
    this.options.onAck?.(outcome, request);
  }

  private fail(error: Error): void {
    if (this.fatal !== null) return;
    this.fatal = error;
    if (this.stream !== null) this.stream.end({ kind: 'fatal', error });
    else this.stop.abort(error);
  }

  private throwIfFatal(): void {
    if (this.fatal !== null) throw this.fatal;
  }

  private unackedText(why: string): string {
    return `${why}; ${this.pending.size} batches unacknowledged, ${this.batches} acknowledged (sending the same input again is safe)`;
  }

  private totals(): IngestTotals {
    return {
      batches: this.batches,
      accepted: this.accepted,
      rejected: this.rejected,
      rejects: { ...this.rejects },
      reconnects: this.reconnects,
      interrupted: this.interrupted,
    };
  }
}

function reasonOf(wire: Parameters<typeof rejectReasonFromWire>[0]): RejectReason {
  try {
    return rejectReasonFromWire(wire);
  } catch (err) {
    throw new IngestClientError('protocol', `a rejection has no reason: ${errorText(err)}`, {
      cause: err,
    });
  }
}

export function withJitter(ms: number): number {
  return Math.round(ms * (0.5 + Math.random() * 0.5));
}

export async function sleepUnlessStopped(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch {
    throwIfStopped(signal);
  }
}

export function throwIfStopped(signal: AbortSignal): void {
  if (signal.aborted) throw asError(signal.reason);
}
